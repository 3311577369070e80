"""Derive adapters/hl7/data/v2-tables.json from ../shared/fhir-r4/v2-tables.json.

Only the HL7 v2 tables the converter uses are kept, as ``{table: {"system": url,
"concepts": {code: display}}}``, so the adapter never reads ../shared at run time.
Run: ``.venv/bin/python tools/derive_hl7_tables.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO.parent / "shared" / "fhir-r4" / "v2-tables.json"
TARGET = REPO / "adapters" / "hl7" / "data" / "v2-tables.json"

#: Tables referenced by adapters/hl7/convert (HL7 v2 table numbers).
TABLES = (
    "0001 0002 0004 0007 0023 0052 0063 0078 0085 0119 0123 0127 0128 0131 "
    "0189 0190 0201 0202 0203 0443"
).split()


def main() -> None:
    document = json.loads(SOURCE.read_text())
    wanted = {f"v2-{t}" for t in TABLES}
    out: dict[str, dict[str, object]] = {}
    for entry in document["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] != "CodeSystem" or resource["id"] not in wanted:
            continue
        concepts: dict[str, str] = {}
        stack = list(resource.get("concept", []))
        while stack:
            concept = stack.pop()
            concepts[str(concept["code"])] = str(concept.get("display", ""))
            stack.extend(concept.get("concept", []))
        out[resource["id"][3:]] = {"system": resource["url"], "concepts": concepts}
    missing = sorted(set(TABLES) - set(out))
    TARGET.write_text(json.dumps(out, indent=0, sort_keys=True, ensure_ascii=False) + "\n")
    print(f"{len(out)} tables written to {TARGET.relative_to(REPO)}; missing: {missing}")


if __name__ == "__main__":
    main()
