"""Extraction over every resource of the Synthea sample bundles (skipped without the data)."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from fhirhub.fhir_store.search.extract import Extractor
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
