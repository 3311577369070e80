"""CodeSystem supplements (http://hl7.org/fhir/R4/codesystem.html#supplements) and nested
expansions.

A supplement is a CodeSystem with ``content = supplement`` whose ``supplements`` names the
code system it adds to: its concepts carry designations (translations, synonyms) and
properties for codes of that system, never codes of their own. As FHIR says, a supplement is
used only where asked for: the ``useSupplement`` parameter of ``$lookup`` and ``$expand``
(repeatable, a canonical ``url`` or ``url|version``) or the ValueSet extension
``valueset-supplement``. Its designations then count for ``displayLanguage`` and
``includeDesignations``, and its properties are listed by ``$lookup``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, select

from fhirhub.plugins.terminology.service import Terminology
from fhirhub.plugins.terminology.store import Version
from fhirhub.plugins.terminology.tables import parent_table
from fhirhub.sdk import FhirError, invalid

#: The ValueSet extension naming a supplement its expansion uses.
EXTENSION = "http://hl7.org/fhir/StructureDefinition/valueset-supplement"


def requested(parameters: Sequence[str], value_set: dict[str, Any] | None = None) -> list[str]:
    """The supplements asked for: the parameters' and the value set's extension's."""
    out = list(parameters)
    for extension in (value_set or {}).get("extension") or []:
        if isinstance(extension, dict) and extension.get("url") == EXTENSION:
            value = extension.get("valueCanonical") or extension.get("valueUri")
            if isinstance(value, str):
                out.append(value)
    return list(dict.fromkeys(out))


def resolve(service: Terminology, conn: Connection, canonicals: Iterable[str]) -> list[Version]:
    """The loaded supplement versions; 404 for one that is not loaded, 400 for a code
    system that is not a supplement."""
    out: list[Version] = []
    for canonical in canonicals:
        url, _, version = canonical.partition("|")
        found = service.find(conn, url, version or None)
        if found is None:
            raise FhirError(404, f"Supplement {canonical} is not known", code="not-found")
        if found.content != "supplement" or not found.supplements:
            raise invalid(f"CodeSystem {canonical} is not a supplement")
        out.append(found)
    return out


def supplemented(version: Version) -> str:
    """The url of the code system a supplement adds to (its ``supplements`` without a
    version)."""
    return (version.supplements or "").partition("|")[0]


def additions(
    service: Terminology,
    conn: Connection,
    supplements: Sequence[Version],
    system: str,
    code: str,
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The designations and properties the supplements give ``system#code``."""
    designations: list[dict[str, Any]] = []
    properties: list[tuple[str, str]] = []
    for supplement in supplements:
        if supplemented(supplement) != system:
            continue
        concept = service.concept(conn, supplement, code)
        if concept is None:
            continue
        designations.extend(json.loads(concept.designations or "[]"))
        properties.extend(concept.properties)
    return designations, properties


def nest(
    conn: Connection, versions: dict[str, int], items: list[tuple[str, str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """``contains`` items, each ``(system, code, item)`` in expansion order, nested under the
    first of their parents (in the code system's hierarchy) that the expansion holds too
    (``ValueSet.expansion.contains.contains``); the others stay at the top, in order."""
    by_key = {(system, code): item for system, code, item in items}
    parents: dict[tuple[str, str], list[str]] = {}
    for system, key in versions.items():
        codes = [code for s, code, _ in items if s == system]
        for start in range(0, len(codes), 500):
            rows = conn.execute(
                select(parent_table.c.code, parent_table.c.parent)
                .where(
                    parent_table.c.version_key == key,
                    parent_table.c.code.in_(codes[start : start + 500]),
                )
                .order_by(parent_table.c.code, parent_table.c.parent)
            )
            for code, parent in rows:
                parents.setdefault((system, code), []).append(parent)
    top: list[dict[str, Any]] = []
    for system, code, item in items:
        above = next(
            (by_key[(system, p)] for p in parents.get((system, code), []) if (system, p) in by_key),
            None,
        )
        if above is None or above is item:
            top.append(item)
        else:
            above.setdefault("contains", []).append(item)
    return top
