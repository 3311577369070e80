"""Codes checked on write against the loaded code systems, and, for ``$validate`` only, the
codes of elements bound extensible or preferred against their value sets.

Every ``Coding``-shaped element (an object with ``system`` and ``code``) whose system is one
of the ``strict_systems`` setting and is loaded must name a code of the loaded (latest)
version: otherwise the write is refused with a 400 naming the element. A strict system that is
not loaded is not checked (nothing to check against), and other systems are left to the
store's own validation, which already enforces the R4 required bindings.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from fhirhub.plugins.terminology.service import Terminology
from fhirhub.sdk import BoundCode, FhirError, Issue


def codings(value: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(FHIRPath-like element path, coding) of every Coding-shaped object in ``value``."""
    if isinstance(value, dict):
        if isinstance(value.get("system"), str) and isinstance(value.get("code"), str):
            yield path, value
        for key, item in value.items():
            if key in ("meta", "text", "contained"):
                continue
            if isinstance(item, list):
                for index, element in enumerate(item):
                    yield from codings(element, f"{path}.{key}[{index}]")
            elif isinstance(item, dict):
                yield from codings(item, f"{path}.{key}")


def _may_name(resource: dict[str, Any], systems: set[str]) -> bool:
    """False when no string in ``resource`` equals one of ``systems`` (so :func:`codings`
    finds none of them): a substring test on the resource's JSON text, which holds every
    string value in its escaped form. Nearly every write names none of the strict systems,
    and walking each resource with element paths was most of this check's cost per write."""
    try:
        text = orjson.dumps(resource)
    except TypeError:  # not plain JSON data: walk it
        return True
    return any(orjson.dumps(system)[1:-1] in text for system in systems)


def check_resource(service: Terminology, resource: dict[str, Any]) -> None:
    strict = set(service.settings.strict_systems)
    if not strict or not _may_name(resource, strict):
        return
    found = [
        (p, c)
        for p, c in codings(resource, resource.get("resourceType", "Resource"))
        if c["system"] in strict
    ]
    if not found:
        return
    issues: list[Issue] = []
    for path, coding in found:
        codes = service.codes_of(coding["system"], coding.get("version"))
        if codes is None:
            continue  # not loaded: nothing to check against
        version, known = codes
        if coding["code"] not in known:
            issues.append(
                Issue(
                    "error",
                    "code-invalid",
                    f"Unknown code {coding['code']!r} in {coding['system']} (version {version})",
                    (path,),
                )
            )
    if issues:
        raise FhirError(400, issues=issues)


def codes_outside(service: Terminology, codes: list[BoundCode]) -> list[BoundCode]:
    """The ``validate_bound_codes`` answer: the codes not in their bound value set, of those
    this terminology can tell about. A code is checked only when its system is loaded (a
    code of a system it has not loaded may well belong to an extensible value set's intent)
    and its value set is known and expandable here; a code the system does not define is
    outside the value set too. ``$validate`` alone calls this: one membership query per code
    (``$validate-code``'s), so a resource with a handful of coded elements costs a few ms."""
    from fhirhub.plugins.terminology.expand import Options, expand

    outside: list[BoundCode] = []
    value_sets: dict[str, dict[str, Any] | None] = {}
    with service.read() as conn:
        for bound in codes:
            if service.find(conn, bound.system, bound.version) is None:
                continue
            if bound.value_set not in value_sets:
                # The bound value sets are the R4 definitions' canonical ones: read as the
                # system, so a caller without ValueSet scopes still gets its warnings.
                value_sets[bound.value_set] = service.value_set_as_system(bound.value_set)
            value_set = value_sets[bound.value_set]
            if value_set is None:
                continue
            try:
                found = expand(
                    service, conn, value_set, Options(count=1, code=(bound.system, bound.code))
                )
            except FhirError:  # it needs a system that is not loaded, or is malformed
                continue
            if not found.entries:
                outside.append(bound)
    return outside
