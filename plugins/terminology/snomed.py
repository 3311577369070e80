"""SNOMED CT from an RF2 snapshot the user provides (its licence is per country).

Read from the snapshot folder (searched recursively): ``sct2_Concept_Snapshot*.txt``
(active flag), ``sct2_Description_Snapshot*.txt`` (the first active synonym is the display,
every active description a designation, the fully specified name with use ``fsn``) and
``sct2_Relationship_Snapshot*.txt`` (active ``116680003 |Is a|`` rows are the hierarchy).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

from fhirhub.plugins.terminology.model import SNOMED, CodeSystemData, Concept, Designation
from fhirhub.sdk import invalid

IS_A = "116680003"
FSN = "900000000000003001"
SYNONYM = "900000000000013009"


def _file(folder: Path, prefix: str) -> Path:
    found = sorted(folder.rglob(f"{prefix}*.txt"))
    if not found:
        raise invalid(f"No {prefix}*.txt in the RF2 snapshot {folder}")
    return found[0]


def _rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        yield from csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)


def from_rf2(folder: str, version: str | None) -> CodeSystemData:
    root = Path(folder)
    concept_file = _file(root, "sct2_Concept_Snapshot")
    by_code: dict[str, Concept] = {}
    for row in _rows(concept_file):
        if not row.get("id", "").isdigit():
            raise invalid(f"{concept_file.name}: malformed concept id {row.get('id')!r}")
        by_code[row["id"]] = Concept(code=row["id"], inactive=row.get("active") != "1")
    for row in _rows(_file(root, "sct2_Description_Snapshot")):
        concept = by_code.get(row.get("conceptId", ""))
        if concept is None or row.get("active") != "1":
            continue
        use = "fsn" if row.get("typeId") == FSN else "synonym"
        concept.designations.append(Designation(row["term"], row.get("languageCode"), use))
        if use == "synonym" and concept.display is None:
            concept.display = row["term"]
    for row in _rows(_file(root, "sct2_Relationship_Snapshot")):
        if row.get("active") != "1" or row.get("typeId") != IS_A:
            continue
        child, parent = by_code.get(row.get("sourceId", "")), row.get("destinationId", "")
        if child is not None and parent in by_code and parent not in child.parents:
            child.parents.append(parent)
    if version is None:
        match = re.search(r"_(\d{8})\.txt$", concept_file.name)
        version = match.group(1) if match else "unversioned"
    return CodeSystemData(
        url=SNOMED,
        version=version,
        concepts=list(by_code.values()),
        name="SNOMED_CT",
        title="SNOMED CT",
        source="snomed",
    )
