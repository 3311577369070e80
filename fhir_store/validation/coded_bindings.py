"""The codings a resource holds in elements bound ``extensible`` or ``preferred``.

R4 (http://hl7.org/fhir/R4/terminologies.html#strength) lets a resource carry codes from
outside an extensible or preferred value set, so a write never checks them; ``$validate``
reports such a code as a warning. The bindings come from ``definitions/coded-bindings.json``
(derived from the R4 StructureDefinitions by ``tools/derive_validation_data.py``), and the
walk follows the compiled element tree of :mod:`.schema`, so choice elements, backbone
elements, datatypes (``Timing.code``) and ``contentReference`` resolve as in validation.
Whether a code is in the value set is a terminology's question (the ``validate_bound_codes``
hook); this module only finds the codings and their bindings.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from .schema import COMPLEX, RESOURCE, Node, _load, schema


@dataclass(frozen=True)
class BoundCode:
    """One coding in an element with an extensible or preferred binding."""

    expression: str  # where it is, FHIRPath-like: ``Condition.category[0].coding[0]``
    element: str  # the element definition's path: ``Condition.category``
    strength: str  # ``extensible`` | ``preferred``
    value_set: str  # the bound ValueSet's canonical url
    system: str
    code: str
    version: str | None = None  # ``Coding.version``, when given


@cache
def _bindings() -> dict[str, tuple[str, str]]:
    data = _load("coded-bindings.json")
    return {path: (strength, url) for path, (strength, url) in data["bindings"].items()}


def bound_codes(resource: dict[str, Any]) -> list[BoundCode]:
    """Every coding (``system`` and ``code`` both strings) of ``resource`` in an element bound
    extensible or preferred, contained resources included; [] for an unknown type."""
    node = _resource_node(resource)
    out: list[BoundCode] = []
    if node is not None:
        _walk(resource, node, node.name, _bindings(), out)
    return out


def _resource_node(resource: dict[str, Any]) -> Node | None:
    resource_type = resource.get("resourceType")
    return schema().resources.get(resource_type) if isinstance(resource_type, str) else None


def _walk(
    value: dict[str, Any],
    node: Node,
    path: str,
    bindings: dict[str, tuple[str, str]],
    out: list[BoundCode],
) -> None:
    for key, item in value.items():
        slot = node.slots.get(key)
        if slot is None or slot.kind not in (COMPLEX, RESOURCE):
            continue
        many = isinstance(item, list)
        for index, element in enumerate(item if many else [item]):
            if not isinstance(element, dict):
                continue
            where = f"{path}.{key}[{index}]" if many else f"{path}.{key}"
            if slot.kind == RESOURCE:
                inner = _resource_node(element)
                if inner is not None:
                    _walk(element, inner, where, bindings, out)
                continue
            definition = f"{node.name}.{slot.name}"
            binding = bindings.get(definition)
            if binding is not None and slot.type_name == "CodeableConcept":
                codings = element.get("coding")
                for position, coding in enumerate(codings if isinstance(codings, list) else []):
                    _add(out, coding, f"{where}.coding[{position}]", definition, binding)
            elif binding is not None and slot.type_name == "Coding":
                _add(out, element, where, definition, binding)
            elif slot.node is not None:
                _walk(element, slot.node, where, bindings, out)


def _add(
    out: list[BoundCode], coding: Any, where: str, definition: str, binding: tuple[str, str]
) -> None:
    if not isinstance(coding, dict):
        return
    system, code, version = coding.get("system"), coding.get("code"), coding.get("version")
    if isinstance(system, str) and isinstance(code, str):
        out.append(
            BoundCode(
                expression=where,
                element=definition,
                strength=binding[0],
                value_set=binding[1],
                system=system,
                code=code,
                version=version if isinstance(version, str) else None,
            )
        )
