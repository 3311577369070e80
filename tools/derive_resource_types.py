"""Write ``fhir_store/definitions/r4-resource-types.json``: the names of the FHIR R4 resource types.

Derived from the official ``profiles-resources.json`` (FHIR 4.0.1): every non-abstract
StructureDefinition of kind ``resource`` whose ``fhirVersion`` is 4.0.1 (the copy also carries
R4B's ``SubscriptionStatus``, which is not an R4 type). The search parameter registry uses the list
so that types without type-specific search parameters (Binary, Parameters, ...) still get the
``Resource``-level ones (``_id``, ``_lastUpdated``, ``_tag``, ...).

Usage: ``python tools/derive_resource_types.py [path/to/profiles-resources.json]``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO.parent / "shared" / "fhir-r4" / "profiles-resources.json"
TARGET = REPO / "fhir_store" / "definitions" / "r4-resource-types.json"


def main(argv: list[str]) -> None:
    source = Path(argv[1]) if len(argv) > 1 else DEFAULT_SOURCE
    bundle = json.loads(source.read_text())
    names = sorted(
        entry["resource"]["name"]
        for entry in bundle["entry"]
        if entry["resource"].get("resourceType") == "StructureDefinition"
        and entry["resource"].get("kind") == "resource"
        and not entry["resource"].get("abstract")
        and entry["resource"].get("fhirVersion") == "4.0.1"
    )
    TARGET.write_text(json.dumps(names, indent=0) + "\n")
    print(f"{len(names)} resource types -> {TARGET}")


if __name__ == "__main__":
    main(sys.argv)
