"""Measure search query speed over the Synthea data (../shared/data/synthea).

Loads the 100 Synthea transaction Bundles into a fresh database (resource_current rows plus the
search indexes, through ``fhir_store.search.index.Indexer``), then times typical searches
through ``fhir_store.search.query.search`` and prints SQLite's query plans for the common
shapes. Usage::

    .venv/bin/python tools/bench_search.py            # SQLite in a temporary directory
    .venv/bin/python tools/bench_search.py --pg       # PostgreSQL (a throw-away schema in `test`)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from sqlalchemy import Engine, create_engine, func, select, text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fhirhub.fhir_store.database import make_engine  # noqa: E402
from fhirhub.fhir_store.schema import metadata  # noqa: E402
from fhirhub.fhir_store.search.index import Indexer  # noqa: E402
from fhirhub.fhir_store.search.index_tables import index_token  # noqa: E402
from fhirhub.fhir_store.search.parameters import default_registry  # noqa: E402
from fhirhub.fhir_store.search.query import search  # noqa: E402
from tests.fhir_store.search.query_fixtures import load_synthea, synthea_files  # noqa: E402

BASE = "http://bench/fhir"


def timed(
    engine: Engine, registry: Any, resource_type: str | None, query: str, runs: int = 15
) -> tuple[float, dict[str, Any]]:
    params = parse_qsl(query, keep_blank_values=True)
    samples = []
    result: bytes = b""
    with engine.connect() as conn:
        for _ in range(runs):
            start = time.perf_counter()
            result = search(conn, registry, resource_type, params, base_url=BASE)
            samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000, orjson.loads(result)


def page_through(
    engine: Engine, registry: Any, resource_type: str, query: str
) -> tuple[int, float]:
    params = parse_qsl(query, keep_blank_values=True)
    seen = 0
    start = time.perf_counter()
    with engine.connect() as conn:
        while True:
            bundle = orjson.loads(
                search(conn, registry, resource_type, params, base_url=BASE, max_count=1000)
            )
            seen += sum(1 for e in bundle.get("entry", []) if e["search"]["mode"] == "match")
            nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
            if not nxt:
                break
            params = parse_qsl(urlsplit(nxt[0]).query, keep_blank_values=True)
    return seen, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", action="store_true", help="run on PostgreSQL instead of SQLite")
    parser.add_argument("--files", type=int, default=None, help="load only the first N bundles")
    args = parser.parse_args()
    files = synthea_files(args.files)
    if not files:
        sys.exit("no Synthea data at ../shared/data/synthea")
    cleanup = None
    if args.pg:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        url = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine = create_engine(url, connect_args={"options": f"-csearch_path={schema}"})

        def cleanup() -> None:
            engine.dispose()
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    else:
        folder = tempfile.mkdtemp()
        engine = make_engine(f"sqlite:///{folder}/bench.db")
    try:
        metadata.create_all(engine)
        registry = default_registry()
        start = time.perf_counter()
        written = load_synthea(engine, Indexer(registry), files)
        load_s = time.perf_counter() - start
        with engine.begin() as conn:
            if args.pg:
                conn.execute(text("ANALYZE"))
            else:
                conn.exec_driver_sql("ANALYZE")
            code, hits = conn.execute(
                select(index_token.c.code, func.count())
                .where(index_token.c.resource_type == "Observation", index_token.c.param == "code")
                .group_by(index_token.c.code)
                .order_by(func.count().desc())
                .limit(1)
            ).one()
        print(
            f"backend: {engine.dialect.name}; loaded {written} resources from {len(files)} bundles in {load_s:.1f} s"
        )
        print(f"most common Observation code: {code} ({hits} Observations)")
        patient = None
        with engine.connect() as conn:
            patient = conn.execute(
                text(
                    "SELECT resource_id FROM resource_current WHERE resource_type='Patient' LIMIT 1"
                )
            ).scalar_one()
        queries = [
            ("Observation", f"code={code}&_summary=count"),
            ("Observation", f"code=http://loinc.org|{code}&_summary=count"),
            ("Observation", "_summary=count"),
            ("Observation", f"code={code}&_count=20"),
            ("Observation", f"code={code}&date=ge2015&_summary=count"),
            ("Observation", f"code={code}&_sort=-date&_count=20"),
            ("Observation", "value-quantity=gt100&_summary=count"),
            ("Patient", "name=mar&_count=20"),
            ("Observation", f"subject=Patient/{patient}&_count=100"),
            ("Observation", "subject.name=mar&_summary=count"),
            ("Patient", f"_has:Observation:patient:code={code}&_summary=count"),
            (
                "Encounter",
                f"subject=Patient/{patient}&_include=Encounter:participant&_revinclude=Observation:encounter&_count=50",
            ),
            (
                "Observation",
                "component-code-value-quantity=http://loinc.org|8480-6$gt140&_summary=count",
            ),
        ]
        for resource_type, query in queries:
            ms, bundle = timed(engine, registry, resource_type, query)
            entries = len(bundle.get("entry", []))
            print(
                f"{ms:8.2f} ms  total={bundle.get('total')!s:>6} entries={entries:>4}  {resource_type}?{query}"
            )
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        for query in ["_count=1000", f"code={code}&_count=1000", "_count=100"]:
            seen, seconds = page_through(engine, registry, "Observation", query)
            print(
                f"paging Observation?{query}: {seen} resources in {seconds:.2f} s = {seen / seconds:,.0f} resources/s"
            )
        seen, seconds = page_through(
            engine, registry, "Observation", "_count=1000&_elements=code,subject"
        )
        print(
            f"paging Observation?_count=1000&_elements=code,subject: {seen / seconds:,.0f} resources/s"
        )
        if not args.pg:
            from fhirhub.fhir_store.schema import resource_current as rc
            from fhirhub.fhir_store.search.predicates import Owner, Predicates

            with engine.connect() as conn:
                preds = Predicates(conn, registry, base_url=BASE, now_us=0)
                owner = Owner(rc, "Observation")
                for name, value in [("code", code), ("subject.name", "mar"), ("date", "ge2015")]:
                    stmt = (
                        select(func.count())
                        .select_from(rc)
                        .where(
                            rc.c.deleted.is_(False),
                            rc.c.resource_type == "Observation",
                            preds.condition(owner, name, value),
                        )
                    )
                    compiled = stmt.compile(conn, compile_kwargs={"literal_binds": True})
                    plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()
                    print(f"plan for Observation?{name}={value}:")
                    for row in plan:
                        print("   ", row[-1])
    finally:
        if cleanup is not None:
            cleanup()


if __name__ == "__main__":
    main()
