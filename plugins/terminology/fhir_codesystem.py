"""FHIR CodeSystem resources (a user's, or the R4 specification's) as :class:`CodeSystemData`.

The hierarchy comes from nesting (``concept.concept``) and from the ``parent`` property
(http://hl7.org/fhir/R4/codesystem.html#hierarchy: either may be used, both combine);
``notSelectable`` marks abstract concepts, ``status``/``inactive`` inactive ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fhirhub.plugins.terminology.model import CodeSystemData, Concept, Designation, check_code
from fhirhub.sdk import invalid

#: Property codes with a meaning of their own (not stored as plain properties).
_PARENT = "parent"
_CHILD = "child"


def _value(prop: dict[str, Any]) -> str | None:
    for key, value in prop.items():
        if key.startswith("value"):
            if isinstance(value, dict):  # valueCoding
                return str(value.get("code")) if value.get("code") else None
            if isinstance(value, bool):
                return "true" if value else "false"
            return str(value)
    return None


def _walk(
    concepts: list[dict[str, Any]], parent: str | None, path: str
) -> Iterator[tuple[dict[str, Any], str | None, str]]:
    """(concept, parent code, element path) in document order, without recursion: a
    deeply nested CodeSystem must be refused or loaded, never overflow the stack."""
    stack: list[tuple[Any, str | None, str]] = [
        (c, parent, f"{path}[{i}]") for i, c in reversed(list(enumerate(concepts)))
    ]
    while stack:
        concept, above, here = stack.pop()
        if not isinstance(concept, dict):
            raise invalid(f"{here}: a concept must be an object")
        yield concept, above, here
        children = concept.get("concept") or []
        stack.extend(
            (child, concept.get("code"), f"{here}.concept[{i}]")
            for i, child in reversed(list(enumerate(children)))
        )


def from_resource(
    resource: dict[str, Any], *, source: str = "fhir", resource_id: str | None = None
) -> CodeSystemData:
    """The concepts of a CodeSystem resource. Raises ``FhirError`` 400 naming the element of a
    malformed concept, a duplicate code, a parent that is not in the system or a cycle (the
    cycle is found when the version is written)."""
    url = resource.get("url")
    if not isinstance(url, str) or not url:
        raise invalid("A CodeSystem needs a url to be used as terminology")
    by_code: dict[str, Concept] = {}
    for concept, parent, path in _walk(resource.get("concept") or [], None, "CodeSystem.concept"):
        try:
            code = check_code(concept.get("code"))
        except Exception:
            raise invalid(f"{path}.code: malformed code {concept.get('code')!r}") from None
        if code in by_code:
            raise invalid(f"{path}.code: code {code!r} is defined twice")
        item = Concept(
            code=code, display=concept.get("display"), definition=concept.get("definition")
        )
        if parent is not None:
            item.parents.append(parent)
        for designation in concept.get("designation") or []:
            if designation.get("value"):
                use = designation.get("use") or {}
                item.designations.append(
                    Designation(designation["value"], designation.get("language"), use.get("code"))
                )
        for prop in concept.get("property") or []:
            name, value = prop.get("code"), _value(prop)
            if not name or value is None:
                continue
            if name == _PARENT:
                item.parents.append(value)
            elif name == _CHILD:
                continue  # the child names this concept as its parent, or nests under it
            elif name == "notSelectable":
                item.abstract = value == "true"
            elif name == "inactive":
                item.inactive = value == "true"
            elif name == "status" and value in ("retired", "inactive"):
                item.inactive = True
            else:
                item.properties.append((name, value[:255]))
        if concept.get("abstract"):  # the compact form of the shipped R4 data
            item.abstract = True
        by_code[code] = item
    # ``child`` properties, the other direction of the hierarchy.
    for concept, _parent, _path in _walk(resource.get("concept") or [], None, ""):
        for prop in concept.get("property") or []:
            if prop.get("code") == _CHILD and (child := _value(prop)) in by_code:
                by_code[child].parents.append(concept["code"])
    for item in by_code.values():
        item.parents = list(dict.fromkeys(item.parents))
    return CodeSystemData(
        url=url,
        version=str(resource.get("version") or "unversioned"),
        concepts=list(by_code.values()),
        name=resource.get("name"),
        title=resource.get("title"),
        content=str(resource.get("content") or "complete"),
        case_sensitive=bool(resource.get("caseSensitive", True)),
        hierarchy=resource.get("hierarchyMeaning") or "is-a",
        source=source,
        resource_id=resource_id,
        supplements=resource.get("supplements"),
    )
