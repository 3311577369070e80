"""Derive ``fhir_store/definitions/summary-elements.json`` from the R4 StructureDefinitions.

``_summary`` (http://hl7.org/fhir/R4/search.html#summary) keeps the elements marked
``isSummary`` (``_summary=true``) or the mandatory top-level ones (``_summary=text``). The
official ``profiles-resources.json`` is 4.6 MB; the read path only needs, per resource type, the
names of its top-level summary and mandatory elements, so this script writes that compact table:
``{"Observation": {"summary": ["id", "meta", ..., "value[x]"], "mandatory": ["status", "code"]},
...}``. Choice elements keep their ``[x]`` suffix; the read side expands them.

Usage: ``python tools/derive_summary_elements.py [../shared/fhir-r4/profiles-resources.json]``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO.parent / "shared" / "fhir-r4" / "profiles-resources.json"
TARGET = REPO / "fhir_store" / "definitions" / "summary-elements.json"


def derive(bundle: dict) -> dict[str, dict[str, list[str]]]:  # type: ignore[type-arg]
    out: dict[str, dict[str, list[str]]] = {}
    for entry in bundle["entry"]:
        sd = entry["resource"]
        if sd.get("resourceType") != "StructureDefinition" or sd.get("kind") != "resource":
            continue
        if sd.get("abstract") or sd.get("derivation") == "constraint":
            continue
        name = sd["type"]
        summary: list[str] = []
        mandatory: list[str] = []
        for element in sd["snapshot"]["element"]:
            parts = element["path"].split(".")
            if len(parts) != 2:
                continue
            if element.get("isSummary"):
                summary.append(parts[1])
            if int(element.get("min", 0)) >= 1:
                mandatory.append(parts[1])
        out[name] = {"summary": summary, "mandatory": mandatory}
    return dict(sorted(out.items()))


def main(argv: list[str]) -> None:
    source = Path(argv[1]) if len(argv) > 1 else SOURCE
    table = derive(json.loads(source.read_bytes()))
    TARGET.write_text(json.dumps(table, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"wrote {TARGET} ({len(table)} resource types)")


if __name__ == "__main__":
    main(sys.argv)
