"""LOINC from a release the user provides (LOINC's licence forbids shipping it here).

``Loinc.csv`` gives the terms: display ``LONG_COMMON_NAME``, the ``SHORTNAME`` as a designation,
the six axes and ``CLASS`` as properties, ``STATUS`` ``DEPRECATED``/``DISCOURAGED`` as inactive.
The optional ``MultiAxialHierarchy.csv`` (``PATH_TO_ROOT,SEQUENCE,IMMEDIATE_PARENT,CODE,
CODE_TEXT``) adds the LOINC parts (``LP...``) as abstract concepts and the is-a edges, a term
having as many parents as rows.
"""

from __future__ import annotations

import csv
from pathlib import Path

from fhirhub.plugins.terminology.model import (
    LOINC,
    CodeSystemData,
    Concept,
    Designation,
    check_code,
)
from fhirhub.sdk import invalid

_AXES = ("COMPONENT", "PROPERTY", "TIME_ASPCT", "SYSTEM", "SCALE_TYP", "METHOD_TYP", "CLASS")


def _rows(path: Path, required: tuple[str, ...]) -> csv.DictReader[str]:
    handle = path.open(encoding="utf-8-sig", newline="")
    reader = csv.DictReader(handle)
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise invalid(f"{path.name} lacks the column(s) {', '.join(missing)}")
    return reader


def from_files(loinc_csv: str, hierarchy_csv: str | None, version: str) -> CodeSystemData:
    by_code: dict[str, Concept] = {}
    for line, row in enumerate(_rows(Path(loinc_csv), ("LOINC_NUM", "LONG_COMMON_NAME")), start=2):
        try:
            code = check_code(row["LOINC_NUM"].strip())
        except Exception:
            raise invalid(f"Loinc.csv line {line}: malformed LOINC_NUM") from None
        concept = Concept(code=code, display=row["LONG_COMMON_NAME"].strip() or None)
        if (row.get("SHORTNAME") or "").strip():
            concept.designations.append(Designation(row["SHORTNAME"].strip(), "en", "SHORTNAME"))
        concept.properties = [
            (axis, row[axis].strip()) for axis in _AXES if (row.get(axis) or "").strip()
        ]
        concept.inactive = (row.get("STATUS") or "").strip() in ("DEPRECATED", "DISCOURAGED")
        by_code[code] = concept
    if hierarchy_csv:
        for line, row in enumerate(
            _rows(Path(hierarchy_csv), ("IMMEDIATE_PARENT", "CODE", "CODE_TEXT")), start=2
        ):
            code, parent = row["CODE"].strip(), row["IMMEDIATE_PARENT"].strip()
            if not code:
                raise invalid(f"MultiAxialHierarchy.csv line {line}: no CODE")
            part = by_code.get(code)
            if part is None:
                part = by_code[code] = Concept(
                    code=check_code(code), display=row["CODE_TEXT"].strip() or None, abstract=True
                )
            if parent and parent not in part.parents:
                part.parents.append(parent)
        for concept in by_code.values():
            for parent in concept.parents:
                if parent not in by_code:
                    raise invalid(f"MultiAxialHierarchy.csv names parent {parent!r}, never a CODE")
    if not by_code:
        raise invalid("Loinc.csv holds no terms")
    return CodeSystemData(
        url=LOINC,
        version=version,
        concepts=list(by_code.values()),
        name="LOINC",
        title="Logical Observation Identifiers, Names and Codes",
        source="loinc",
        case_sensitive=False,
    )
