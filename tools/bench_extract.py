"""Measure search-index extraction and indexing speed over the Synthea sample bundles.

Usage: ``python tools/bench_extract.py [../shared/data/synthea] [max_bundles]``

Prints the per-resource cost of ``Extractor.extract`` alone and of ``Indexer.replace_many``
(extraction plus the batched SQLite DELETE/INSERT executemany, one call per Bundle, as the store
does for a transaction) into a fresh file database.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import orjson

from fhirhub.fhir_store.database import make_engine
from fhirhub.fhir_store.schema import metadata
from fhirhub.fhir_store.search.extract import Extractor
from fhirhub.fhir_store.search.index import Indexer
from fhirhub.fhir_store.search.parameters import default_registry

REPO = Path(__file__).resolve().parent.parent


def load(directory: Path, limit: int) -> list[list[dict]]:
    bundles = []
    for path in sorted(directory.glob("*.json"))[:limit]:
        bundle = orjson.loads(path.read_bytes())
        resources = []
        for entry in bundle.get("entry", []):
            resource = entry["resource"]
            resource.setdefault("id", entry.get("fullUrl", "x").rsplit(":", 1)[-1][:64])
            resources.append(resource)
        bundles.append(resources)
    return bundles


def main(argv: list[str]) -> None:
    directory = Path(argv[1]) if len(argv) > 1 else REPO.parent / "shared" / "data" / "synthea"
    limit = int(argv[2]) if len(argv) > 2 else 1000
    bundles = load(directory, limit)
    total = sum(len(b) for b in bundles)
    registry = default_registry()
    extractor = Extractor(registry)
    for bundle in bundles[:1]:  # compile the plans outside the timing
        for resource in bundle:
            extractor.extract(resource)
    rows = 0
    start = time.perf_counter()
    for bundle in bundles:
        for resource in bundle:
            rows += sum(len(v) for v in extractor.extract(resource).values())
    extract_s = time.perf_counter() - start
    print(f"{total} resources, {rows} index rows")
    print(f"extract: {extract_s / total * 1e6:.1f} us/resource ({total / extract_s:,.0f}/s)")

    indexer = Indexer(registry, extractor)
    for delete_existing in (True, False):
        with tempfile.TemporaryDirectory() as tmp:
            engine = make_engine(f"sqlite:///{tmp}/bench.db")
            metadata.create_all(engine)
            start = time.perf_counter()
            with engine.begin() as conn:
                for bundle in bundles:
                    indexer.replace_many(
                        conn,
                        [(r["resourceType"], r["id"], r) for r in bundle],
                        delete_existing=delete_existing,
                    )
            elapsed = time.perf_counter() - start
            engine.dispose()
        label = "replace_many" if delete_existing else "replace_many(delete_existing=False)"
        print(
            f"extract+index, {label} (SQLite): {elapsed / total * 1e6:.1f} us/resource "
            f"({total / elapsed:,.0f}/s)"
        )


if __name__ == "__main__":
    main(sys.argv)
