"""Ingest and read benchmark (issue: the core), over real HTTP against `fhirhub serve`.

Loads the 100 Synthea transaction Bundles of ../shared/data/synthea over HTTP (full search
indexing on), then measures reads. In the same run it times a raw SQLite insert of the same
JSON, the reference the issue names, and reports the ratio.

    .venv/bin/python benchmarks/ingest.py                      # SQLite (embedded default)
    .venv/bin/python benchmarks/ingest.py --db postgresql+psycopg://postgres@127.0.0.1:5432/bench

Figures go to stdout as a table and to benchmarks/results/ingest-<backend>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson

REPO = Path(__file__).resolve().parent.parent
SYNTHEA = REPO.parent / "shared" / "data" / "synthea"
COMMON_LOINC = "8302-2"  # body height: in nearly every Synthea patient


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def raw_sqlite_insert(bundles: list[bytes], directory: Path) -> tuple[int, float]:
    """The reference: plain INSERTs of each resource's JSON into one SQLite table."""
    db = sqlite3.connect(directory / "raw.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE r (type TEXT, id TEXT, content BLOB)")
    start = time.perf_counter()
    total = 0
    for raw in bundles:
        bundle = orjson.loads(raw)
        rows = [
            (e["resource"]["resourceType"], e["fullUrl"], orjson.dumps(e["resource"]))
            for e in bundle["entry"]
        ]
        with db:
            db.executemany("INSERT INTO r VALUES (?, ?, ?)", rows)
        total += len(rows)
    elapsed = time.perf_counter() - start
    db.close()
    return total, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default="", help="database URL (default: a fresh SQLite file)")
    parser.add_argument(
        "--clients", type=int, default=2, help="concurrent HTTP clients posting bundles"
    )
    parser.add_argument("--limit", type=int, default=100, help="number of Synthea bundles")
    parser.add_argument(
        "--synthea",
        type=Path,
        default=SYNTHEA,
        help="folder of Synthea transaction Bundles (*.json), e.g. Synthea's output/fhir",
    )
    args = parser.parse_args()
    if not args.synthea.is_dir():
        print(f"Synthea data not found at {args.synthea} (give --synthea DIR)", file=sys.stderr)
        return 2
    files = sorted(args.synthea.glob("*.json"))[: args.limit]
    bundles = [f.read_bytes() for f in files]
    resources = sum(len(orjson.loads(b)["entry"]) for b in bundles)
    work = Path(tempfile.mkdtemp(prefix="fhirhub-bench-"))
    db_url = args.db or f"sqlite:///{work / 'hub.db'}"
    backend = "postgresql" if db_url.startswith("postgresql") else "sqlite"
    if backend == "postgresql":
        from sqlalchemy import create_engine, text

        server_url, name = db_url.rsplit("/", 1)
        admin = create_engine(f"{server_url}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()

    port = free_port()
    env = {
        **os.environ,
        "FHIRHUB_DATA_DIR": str(work),
        "FHIRHUB_PLUGINS": os.environ.get("FHIRHUB_PLUGINS", ""),
        # The figures measure the FHIR store over loopback; with auth on every request also
        # verifies a JWT and is audited (benchmarks/audit_overhead.py measures that part).
        "FHIRHUB_AUTH": os.environ.get("FHIRHUB_AUTH", "off"),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "fhirhub.core.cli", "serve", "--port", str(port), "--db", db_url],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(work / "server.log", "wb"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        raw_count, raw_seconds = raw_sqlite_insert(bundles, work)

        headers = {"Content-Type": "application/fhir+json", "Prefer": "return=minimal"}
        with httpx.Client(base_url=f"{base}/fhir", timeout=300) as client:

            def post(raw: bytes) -> None:
                response = client.post("", content=raw, headers=headers)
                response.raise_for_status()

            start = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(post, bundles))
            ingest_seconds = time.perf_counter() - start
            memory = rss_mb(server.pid)

            patient_ids = [
                e["resource"]["id"]
                for e in client.get("/Patient", params={"_count": 100, "_elements": "id"})
                .json()
                .get("entry", [])
            ]
            obs_ids = [
                e["resource"]["id"]
                for e in client.get("/Observation", params={"_count": 500, "_elements": "id"})
                .json()
                .get("entry", [])
            ]
            targets = [("Patient", i) for i in patient_ids] + [("Observation", i) for i in obs_ids]
            random.seed(1)
            timings = []
            for resource_type, rid in random.choices(targets, k=1000):
                t0 = time.perf_counter()
                client.get(f"/{resource_type}/{rid}").raise_for_status()
                timings.append((time.perf_counter() - t0) * 1000)
            timings.sort()
            count_timings = []
            for _ in range(30):
                t0 = time.perf_counter()
                result = client.get(
                    "/Observation",
                    params={"code": f"http://loinc.org|{COMMON_LOINC}", "_summary": "count"},
                )
                count_timings.append((time.perf_counter() - t0) * 1000)
            hits = result.json()["total"]

            def page_through(first_url: str) -> tuple[int, float]:
                start_paging = time.perf_counter()
                count = 0
                url: str | None = first_url
                while url:
                    page = client.get(url).json()
                    count += sum(
                        1
                        for e in page.get("entry", [])
                        if e.get("search", {}).get("mode") == "match"
                    )
                    url = next(
                        (
                            link["url"]
                            for link in page.get("link", [])
                            if link["relation"] == "next"
                        ),
                        None,
                    )
                return count, time.perf_counter() - start_paging

            paged, paging_seconds = page_through(
                f"{base}/fhir/Observation?code=http://loinc.org|{COMMON_LOINC}&_count=1000"
            )
            all_paged, all_paging_seconds = page_through(f"{base}/fhir/Observation?_count=1000")
            memory_after = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)

    figures = {
        "backend": backend,
        "bundles": len(bundles),
        "resources": resources,
        "clients": args.clients,
        "ingest_seconds": round(ingest_seconds, 2),
        "ingest_resources_per_s": round(resources / ingest_seconds),
        "raw_sqlite_resources_per_s": round(raw_count / raw_seconds),
        "ratio_to_raw_sqlite": round((resources / ingest_seconds) / (raw_count / raw_seconds), 4),
        "read_p50_ms": round(timings[len(timings) // 2], 2),
        "read_p95_ms": round(timings[int(len(timings) * 0.95)], 2),
        "count_query_median_ms": round(statistics.median(count_timings), 2),
        "count_query_hits": hits,
        "paging_resources": paged,
        "paging_resources_per_s": round(paged / paging_seconds),
        "paging_all_observations": all_paged,
        "paging_all_observations_per_s": round(all_paged / all_paging_seconds),
        "server_rss_mb_after_load": round(memory, 1),
        "server_rss_mb_after_reads": round(memory_after, 1),
        "cpu_count": os.cpu_count(),
    }
    results = REPO / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / f"ingest-{backend}.json").write_text(json.dumps(figures, indent=2) + "\n")
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
