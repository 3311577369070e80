"""Extraction over every resource of the Synthea sample bundles (skipped without the data)."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from fhirhub.fhir_store.search.extract import (
    CONVERTERS,
    Extractor,
    Getter,
    Unsupported,
    compile_fallback,
    compile_fast,
)
from fhirhub.fhir_store.search.parameters import default_registry

SYNTHEA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "synthea"


@pytest.mark.skipif(not SYNTHEA.is_dir(), reason="../shared/data/synthea is not present")
def test_extract_all_synthea_resources(caplog: pytest.LogCaptureFixture) -> None:
    extractor = Extractor(default_registry())
    counts: dict[str, int] = {}
    resources = 0
    with caplog.at_level(logging.WARNING, logger="fhirhub.fhir_store.search.extract"):
        for path in sorted(SYNTHEA.glob("*.json")):
            bundle = orjson.loads(path.read_bytes())
            for entry in bundle.get("entry", []):
                resource = entry["resource"]
                resource.setdefault("id", entry["fullUrl"].rsplit(":", 1)[-1])
                for table, rows in extractor.extract(resource).items():
                    counts[table] = counts.get(table, 0) + len(rows)
                resources += 1
    assert resources > 10_000
    # No parameter failed on real data (failures are logged, not raised).
    assert not [r for r in caplog.records if "failed on" in r.getMessage()]
    for table in ("string", "token", "date", "reference", "quantity", "composite"):
        assert counts.get(table, 0) > 0, table


@pytest.mark.skipif(not SYNTHEA.is_dir(), reason="../shared/data/synthea is not present")
def test_fast_path_agrees_with_fhirpathpy() -> None:
    """On real data, every fast-compiled getter yields the rows fhirpathpy's yield (except
    ``resolve()``, which fhirpathpy does not implement)."""
    registry = default_registry()
    compiled: dict[tuple[str, str], tuple[Getter, Getter] | None] = {}
    compared = 0
    for path in sorted(SYNTHEA.glob("*.json"))[:2]:
        for entry in orjson.loads(path.read_bytes())["entry"]:
            resource = entry["resource"]
            resource_type = resource["resourceType"]
            for code, definition in registry.for_type(resource_type).items():
                expression = definition.expression
                if (
                    expression is None
                    or definition.type in ("special", "composite")
                    or "resolve()" in expression
                ):
                    continue
                key = (resource_type, code)
                if key not in compiled:
                    try:
                        compiled[key] = (
                            compile_fast(expression, resource_type),
                            compile_fallback(expression),
                        )
                    except Unsupported:
                        compiled[key] = None
                pair = compiled[key]
                if pair is None:
                    continue
                convert = CONVERTERS[definition.type]
                fast, general = (
                    sorted(map(repr, (row for v in get(resource) for row in convert(v))))
                    for get in pair
                )
                assert fast == general, (resource_type, code, expression)
                compared += 1
    assert compared > 1000
