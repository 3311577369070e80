"""Master patient index benchmark: ``$match`` latency at 100k patients, the cost of matching on
Synthea ingest, and precision/recall beside an exact-identifier rule, in one run.

1. ``$match``: a SQLite hub is filled with ``--patients`` invented Patients (Faker, seeded)
   through the SDK, their candidate index is built in bulk, then ``fhirhub serve`` answers
   ``--queries`` ``POST Patient/$match`` over loopback HTTP, one at a time; each query is a
   perturbed copy of a stored patient (a typo, a nickname, a missing phone...). Reported:
   p50/p90/p99 latency and how often the stored patient came back graded ``certain``.
2. Ingest: benchmarks/ingest.py's method (the 100 Synthea transaction Bundles POSTed over
   HTTP by 2 clients to ``fhirhub serve`` on a fresh SQLite file), with the MPI disabled
   (``FHIRHUB_PLUGINS=-mpi``) and enabled, alternating ``--rounds`` times. With the MPI the
   clock stops when the bundles are stored *and* its consumer has matched every Patient.
3. Quality: tools/mpi_evaluation.py on the Synthea patients (or the committed sample).

    .venv/bin/python benchmarks/mpi.py                       # everything (several minutes)
    .venv/bin/python benchmarks/mpi.py --skip-ingest --patients 20000

Figures go to stdout and to benchmarks/results/mpi-sqlite.json.
"""

from __future__ import annotations

import argparse
import importlib.util
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
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
SYNTHEA = REPO.parent / "shared" / "data" / "synthea"


def _tool() -> Any:
    spec = importlib.util.spec_from_file_location(
        "mpi_evaluation", REPO / "tools" / "mpi_evaluation.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["mpi_evaluation"] = module
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(db_url: str, work: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    full_env = {**os.environ, "FHIRHUB_DATA_DIR": str(work), "FHIRHUB_AUTH": "off", **env}
    server = subprocess.Popen(
        [sys.executable, "-m", "fhirhub.core.cli", "serve", "--port", str(port), "--db", db_url],
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=open(work / f"server-{port}.log", "wb"),  # noqa: SIM115
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return server, base
        except httpx.HTTPError:
            time.sleep(0.1)
    server.terminate()
    raise RuntimeError(f"fhirhub serve did not start; see {work}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 2)


# -- 1. $match at scale ------------------------------------------------------------------------


def fill(db_path: Path, work: Path, count: int, tool: Any) -> list[dict[str, Any]]:
    """``count`` Patients through the SDK (chunks of 2,000 per transaction) and their
    candidate index in bulk; returns the patients as stored."""
    from fhirhub.core.hub import build_hub
    from fhirhub.core.settings import Settings
    from fhirhub.plugins.mpi.features import features_of
    from fhirhub.plugins.mpi.index import NO_TENANT
    from fhirhub.plugins.mpi.service import service_of
    from fhirhub.sdk import transaction

    people = tool.faker_patients(count, seed=11)
    settings = Settings(
        db=f"sqlite:///{db_path}",
        data_dir=work,
        listeners=False,
        plugins="",
        plugin_config={"mpi": {"match_on_write": False}},
    )  # type: ignore[arg-type]
    hub = build_hub(settings)
    stored = []
    try:
        service = service_of(hub)
        for start in range(0, len(people), 2000):
            chunk = people[start : start + 2000]
            with transaction(hub) as tx:
                for patient in chunk:
                    tx.update(patient)
            service.index.put_many(NO_TENANT, [features_of(p) for p in chunk])
            stored.extend(chunk)
            print(f"  {len(stored)} patients stored and indexed", end="\r", flush=True)
    finally:
        hub.close()
    print()
    return stored


def bench_match(patients: int, queries: int, tool: Any, reuse: Path | None) -> dict[str, Any]:
    """(Point ``reuse`` at the folder of an earlier run to skip filling: the patients are
    re-generated from the same seed, the database is used as it is.)"""
    work = reuse or Path(tempfile.mkdtemp(prefix="fhirhub-mpi-bench-"))
    db_path = work / "hub.db"
    started = time.perf_counter()
    if reuse:
        stored = tool.faker_patients(patients, seed=11)
    else:
        stored = fill(db_path, work, patients, tool)
        print(f"  filled {work}")
    fill_seconds = time.perf_counter() - started
    rng = random.Random(5)
    kinds = ("typo-given", "typo-family", "nickname", "missing", "swapped-day-month", "exact-copy")
    server, base = serve(
        f"sqlite:///{db_path}", work, {"FHIRHUB_MPI_MATCH_ON_WRITE": "false", "FHIRHUB_PLUGINS": ""}
    )
    timings: list[float] = []
    found = certain = 0
    try:
        with httpx.Client(base_url=f"{base}/fhir", timeout=60) as client:
            for index in range(queries + 10):
                original = rng.choice(stored)
                kind = kinds[index % len(kinds)]
                query = (
                    tool._clean(original)
                    if kind == "exact-copy"
                    else tool.perturb(original, kind, rng)
                )
                body = {
                    "resourceType": "Parameters",
                    "parameter": [{"name": "resource", "resource": query}],
                }
                t0 = time.perf_counter()
                response = client.post("/Patient/$match", json=body)
                elapsed = (time.perf_counter() - t0) * 1000
                response.raise_for_status()
                if index < 10:
                    continue  # warm-up: splink compiles its SQL on the first query
                timings.append(elapsed)
                grades = {
                    e["resource"]["id"]: e["search"]["extension"][0]["valueCode"]
                    for e in response.json().get("entry", [])
                }
                found += original["id"] in grades
                certain += grades.get(original["id"]) == "certain"
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "patients": patients,
        "fill_seconds": round(fill_seconds, 1),
        "queries": queries,
        "match_p50_ms": percentile(timings, 0.5),
        "match_p90_ms": percentile(timings, 0.9),
        "match_p99_ms": percentile(timings, 0.99),
        "match_mean_ms": round(statistics.mean(timings), 2),
        "original_returned": round(found / queries, 3),
        "original_certain": round(certain / queries, 3),
    }


# -- 2. ingest with and without the MPI --------------------------------------------------------


def consumer_caught_up(db_path: Path) -> bool:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30) as db:
        head = db.execute("SELECT max(seq) FROM resource_version").fetchone()[0] or 0
        row = db.execute(
            "SELECT last_seq FROM dispatch_cursor WHERE consumer = 'mpi-matching'"
        ).fetchone()
    return row is not None and row[0] >= head


def ingest_once(bundles: list[bytes], with_mpi: bool) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="fhirhub-mpi-ingest-"))
    db_path = work / "hub.db"
    env = {"FHIRHUB_PLUGINS": "" if with_mpi else "-mpi"}
    server, base = serve(f"sqlite:///{db_path}", work, env)
    headers = {"Content-Type": "application/fhir+json", "Prefer": "return=minimal"}
    try:
        with httpx.Client(base_url=f"{base}/fhir", timeout=300) as client:

            def post(raw: bytes) -> None:
                client.post("", content=raw, headers=headers).raise_for_status()

            start = time.perf_counter()
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(post, bundles))
            stored = time.perf_counter() - start
            if with_mpi:
                while not consumer_caught_up(db_path):
                    time.sleep(0.05)
            done = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"stored_s": round(stored, 2), "done_s": round(done, 2)}


def bench_ingest(rounds: int) -> dict[str, Any]:
    files = sorted(SYNTHEA.glob("*.json"))
    bundles = [f.read_bytes() for f in files]
    runs: dict[str, list[dict[str, float]]] = {"without": [], "with": []}
    for round_number in range(rounds):
        for label in ("without", "with"):
            result = ingest_once(bundles, with_mpi=label == "with")
            runs[label].append(result)
            print(f"  round {round_number + 1} {label} MPI: {result}", flush=True)
    without = [r["done_s"] for r in runs["without"]]
    with_mpi = [r["done_s"] for r in runs["with"]]
    overhead = [w / wo - 1 for w, wo in zip(with_mpi, without, strict=True)]
    return {
        "bundles": len(bundles),
        "rounds": rounds,
        "without_mpi_s": without,
        "with_mpi_s_until_matched": with_mpi,
        "with_mpi_s_stored": [r["stored_s"] for r in runs["with"]],
        "overhead_median": round(statistics.median(overhead), 3),
        "overhead_range": [round(min(overhead), 3), round(max(overhead), 3)],
    }


def quality(tool: Any) -> dict[str, Any]:
    people, origin = tool.base_people()
    with tempfile.TemporaryDirectory() as directory:
        with tool.evaluation_service(Path(directory)) as service:
            figures = tool.evaluate(people, service)
    return {
        "people": origin,
        "records": figures["records"],
        "true_pairs": figures["true_pairs"],
        **{
            f"{rule}_{key}": figures[rule][key]
            for rule in ("mpi", "exact_identifier")
            for key in ("precision", "recall", "recall_with_review", "sent_to_review")
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-match", action="store_true")
    parser.add_argument("--reuse", type=Path, help="the folder of an earlier run's 100k database")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")
    args = parser.parse_args()
    tool = _tool()
    figures: dict[str, Any] = {"cpu_count": os.cpu_count(), "backend": "sqlite"}
    if not args.skip_quality:
        figures["quality"] = quality(tool)
        print(json.dumps(figures["quality"], indent=1), flush=True)
    if not args.skip_match:
        figures["match"] = bench_match(args.patients, args.queries, tool, args.reuse)
        print(json.dumps(figures["match"], indent=1), flush=True)
    if not args.skip_ingest and SYNTHEA.is_dir():
        figures["ingest"] = bench_ingest(args.rounds)
        print(json.dumps(figures["ingest"], indent=1), flush=True)
    results = REPO / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / "mpi-sqlite.json").write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
