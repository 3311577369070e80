"""What auditing costs a read: read-by-id p50 over HTTP with the audit plugin on and off.

Each mode runs a real uvicorn server in its own process, authentication on (a header stands in
for the OAuth token so that token checks cost the same in both modes), on a fresh SQLite
database with a few hundred Patients. The client reads random Patients by id over loopback,
one request at a time; the modes alternate ``--rounds`` times and the medians are compared.
With auditing on, every read also queues a record that the writer thread stores as an
AuditEvent in batches, which is included in what the reads pay (same process, same cores).

    .venv/bin/python benchmarks/audit_overhead.py
    .venv/bin/python benchmarks/audit_overhead.py --reads 3000 --rounds 3 --db postgresql+psycopg://postgres@127.0.0.1:5432/bench_audit

Figures go to stdout and to benchmarks/results/audit-overhead-<backend>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from fhirhub.sdk import hookimpl

REPO = Path(__file__).resolve().parent.parent
HEADERS = {"X-Bench-User": "bench", "Content-Type": "application/fhir+json"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the server side (``--serve``) -----------------------------------------------------------


class BenchAuth:
    """Accepts ``X-Bench-User`` as a user with ``user/*.cruds``."""

    PLUGIN_NAME = "bench-auth"

    @hookimpl
    def authenticate_request(self, request: Any, hub: Any) -> Any:
        from fhirhub.sdk import Access, parse_scopes

        user = request.headers.get("x-bench-user")
        if not user:
            return None
        return Access(subject=f"user:{user}", scopes=parse_scopes("user/*.cruds"))


def serve(port: int) -> None:
    import uvicorn

    from fhirhub.core.http.app import create_app
    from fhirhub.core.hub import build_hub
    from fhirhub.core.settings import load_settings

    hub = build_hub(load_settings(), extra_plugins=[BenchAuth()])
    uvicorn.run(create_app(hub=hub), host="127.0.0.1", port=port, log_level="warning")


# -- the client side -------------------------------------------------------------------------


def start(db: str, data_dir: Path, audit: bool) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "FHIRHUB_DB": db,
        "FHIRHUB_DATA_DIR": str(data_dir),
        "FHIRHUB_AUTH": "on",
        "FHIRHUB_HL7_PORT": "off",
        "FHIRHUB_DICOM_PORT": "off",
        "FHIRHUB_PLUGINS": "" if audit else "-audit",
    }
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(data_dir / f"server-{port}.log").open("wb"),
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start: {(data_dir / f'server-{port}.log').read_text()}")


def read_p50(base: str, ids: list[str], reads: int) -> tuple[float, float]:
    with httpx.Client(base_url=f"{base}/fhir", headers=HEADERS, timeout=30) as client:
        for pid in ids[:200]:  # warm-up: connections, caches, the writer thread
            client.get(f"/Patient/{pid}").raise_for_status()
        timings = []
        for pid in random.choices(ids, k=reads):
            t0 = time.perf_counter()
            client.get(f"/Patient/{pid}").raise_for_status()
            timings.append((time.perf_counter() - t0) * 1000)
    timings.sort()
    return timings[len(timings) // 2], timings[int(len(timings) * 0.95)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db", default="", help="database URL (default: a temporary SQLite)")
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    random.seed(7)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        db = args.db or f"sqlite:///{data_dir / 'bench.db'}"
        backend = "sqlite" if db.startswith("sqlite") else "postgresql"
        process, base = start(db, data_dir, audit=False)
        try:
            ids = []
            with httpx.Client(base_url=f"{base}/fhir", headers=HEADERS, timeout=30) as client:
                for n in range(args.patients):
                    patient = {"resourceType": "Patient", "name": [{"family": f"Bench{n}"}]}
                    response = client.post("/Patient", content=orjson.dumps(patient))
                    ids.append(response.raise_for_status().json()["id"])
        finally:
            process.terminate()
            process.wait(30)
        results: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
        for _ in range(args.rounds):
            for mode in ("off", "on"):
                process, base = start(db, data_dir, audit=mode == "on")
                try:
                    results[mode].append(read_p50(base, ids, args.reads))
                finally:
                    process.terminate()
                    process.wait(30)
        audit_events = 0
        if backend == "sqlite":
            import sqlite3

            with sqlite3.connect(data_dir / "bench.db") as conn:
                audit_events = conn.execute(
                    "SELECT count(*) FROM resource_current WHERE resource_type = 'AuditEvent'"
                ).fetchone()[0]

    off_p50 = statistics.median(p50 for p50, _ in results["off"])
    on_p50 = statistics.median(p50 for p50, _ in results["on"])
    figures = {
        "backend": backend,
        "patients": args.patients,
        "reads_per_round": args.reads,
        "rounds": args.rounds,
        "read_p50_ms_audit_off": round(off_p50, 3),
        "read_p50_ms_audit_on": round(on_p50, 3),
        "read_p95_ms_audit_off": round(statistics.median(p95 for _, p95 in results["off"]), 3),
        "read_p95_ms_audit_on": round(statistics.median(p95 for _, p95 in results["on"]), 3),
        "p50_ratio_on_to_off": round(on_p50 / off_p50, 3),
        "p50_per_round_off": [round(p50, 3) for p50, _ in results["off"]],
        "p50_per_round_on": [round(p50, 3) for p50, _ in results["on"]],
        "audit_events_stored": audit_events if backend == "sqlite" else "n/a",
        "cpu_count": os.cpu_count(),
    }
    out = REPO / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / f"audit-overhead-{backend}.json").write_text(json.dumps(figures, indent=2) + "\n")
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
