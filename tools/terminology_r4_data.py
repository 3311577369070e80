"""Build ``plugins/terminology/data/r4-terminology.json.gz`` from the FHIR R4 definitions.

The terminology plugin ships the R4 specification's own CodeSystems (``complete`` ones, with
their concept trees: code, display, definition) and ValueSets (url, version, name, compose),
cut from ``valuesets.json`` of the official R4 (4.0.1) definitions, so that every binding of
base FHIR has its codes without the 9 MB file. Run from the repository root::

    python tools/terminology_r4_data.py ../shared/fhir-r4/valuesets.json
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

OUT = Path("plugins/terminology/data/r4-terminology.json.gz")


def _concepts(concepts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for concept in concepts:
        item: dict[str, Any] = {"code": concept["code"]}
        for key in ("display", "definition"):
            if concept.get(key):
                item[key] = concept[key]
        abstract = any(
            p.get("code") == "notSelectable" and p.get("valueBoolean")
            for p in concept.get("property", [])
        )
        if abstract:
            item["abstract"] = True
        if concept.get("concept"):
            item["concept"] = _concepts(concept["concept"])
        out.append(item)
    return out


def main(source: str) -> None:
    bundle = json.loads(Path(source).read_text())
    systems, value_sets = [], []
    for entry in bundle["entry"]:
        resource = entry["resource"]
        kind = resource["resourceType"]
        if kind == "CodeSystem" and resource.get("content") == "complete":
            systems.append(
                {
                    k: resource[k]
                    for k in (
                        "url",
                        "version",
                        "name",
                        "title",
                        "caseSensitive",
                        "hierarchyMeaning",
                    )
                    if k in resource
                }
                | {"concept": _concepts(resource.get("concept", []))}
            )
        elif kind == "ValueSet" and "compose" in resource:
            value_sets.append(
                {k: resource[k] for k in ("url", "version", "name", "compose") if k in resource}
            )
    data = {"fhirVersion": "4.0.1", "codeSystems": systems, "valueSets": value_sets}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(OUT, "wt", encoding="utf-8", compresslevel=9) as out:
        json.dump(data, out, separators=(",", ":"), sort_keys=True)
    print(f"{OUT}: {len(systems)} code systems, {len(value_sets)} value sets")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/fhir-r4/valuesets.json")
