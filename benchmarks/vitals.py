"""Vitals benchmark: what scoring costs a vital-signs write load, and how fast an alert reaches
an open dashboard, in one run.

1. Write load: ``fhirhub serve`` on a fresh SQLite file, ``--patients`` Patients created first
   (untimed), then one transaction Bundle per patient with the 7 NEWS2 parameters (respiration,
   SpO2, oxygen flow, systolic BP, pulse, ACVPU, temperature: 7 Observations) POSTed over
   loopback HTTP by ``--clients`` clients. The same run with the plugin disabled
   (``FHIRHUB_PLUGINS=-mpi,-vitals``) and enabled (``-mpi``), alternating ``--rounds`` times.
   Reported: the write time (last response) per run and the enabled/disabled ratio, and, with
   the plugin, the time until every patient's score is on the ward board (scoring caught up).
2. Alert latency: with the plugin enabled, a client holds the dashboard's event stream
   (``/plugins/vitals/api/stream``) open while ``--alerts`` high-risk sets are written one at a
   time; reported: p50/p90/max from sending the write to receiving its ``alert`` event.

3. ``--cpu``: the CPU time (``time.process_time``, less sensitive to a loaded machine than wall
   time) of writing the sets in-process (``process_bundle``, the plugin's consumer not running)
   and then of the consumer scoring them, delivered ~10 patients at a time, in one process.

    .venv/bin/python benchmarks/vitals.py                  # 1,000 patients x 7, 3 rounds
    .venv/bin/python benchmarks/vitals.py --patients 200 --rounds 1
    .venv/bin/python benchmarks/vitals.py --cpu --patients 300 --rounds 3

Figures go to stdout and to benchmarks/results/vitals-sqlite.json.
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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "vitals-sqlite.json"
ACVPU = {"A": "248234008", "C": "130987000", "V": "300202002", "P": "450847001"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(work: Path, plugins: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "FHIRHUB_DATA_DIR": str(work),
        "FHIRHUB_AUTH": "off",
        "FHIRHUB_LISTENERS": "off",
        "FHIRHUB_PLUGINS": plugins,
    }
    db = f"sqlite:///{work / 'hub.db'}"
    server = subprocess.Popen(
        [sys.executable, "-m", "fhirhub.core.cli", "serve", "--port", str(port), "--db", db],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(work / f"server-{port}.log", "wb"),  # noqa: SIM115
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(900):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return server, base
        except httpx.HTTPError:
            time.sleep(0.1)
    server.terminate()
    raise RuntimeError(f"fhirhub serve did not start; see {work}")


def stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


def create_patients(base: str, ids: list[str]) -> None:
    with httpx.Client(timeout=300) as client:
        for start in range(0, len(ids), 500):
            bundle = {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "resource": {
                            "resourceType": "Patient",
                            "id": pid,
                            "name": [{"family": f"Bench{pid[-4:]}", "given": ["Ward"]}],
                        },
                        "request": {"method": "PUT", "url": f"Patient/{pid}"},
                    }
                    for pid in ids[start : start + 500]
                ],
            }
            response = client.post(f"{base}/fhir", json=bundle)
            response.raise_for_status()


def _quantity(patient: str, code: str, value: float, unit: str, when: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def vitals_bundle(patient: str, rng: random.Random, *, high: bool = False) -> dict[str, Any]:
    """Seven Observations; about one patient in ten deteriorating (the ward mix)."""
    when = datetime.now(UTC).replace(microsecond=0).isoformat()
    sick = high or rng.random() < 0.1
    values = [
        ("9279-1", rng.randint(24, 30) if sick else rng.randint(12, 20), "/min"),
        ("59408-5", rng.randint(86, 92) if sick else rng.randint(95, 100), "%"),
        ("3151-8", rng.choice([2, 4]) if sick else 0, "L/min"),
        ("8480-6", rng.randint(80, 95) if sick else rng.randint(110, 150), "mm[Hg]"),
        ("8867-4", rng.randint(120, 140) if sick else rng.randint(55, 90), "/min"),
        ("8310-5", round(rng.uniform(38.5, 39.8) if sick else rng.uniform(36.2, 37.6), 1), "Cel"),
    ]
    entries = [_quantity(patient, code, value, unit, when) for code, value, unit in values]
    acvpu = _quantity(patient, "67775-7", 0, "", when)
    del acvpu["valueQuantity"]
    acvpu["valueCodeableConcept"] = {
        "coding": [{"system": "http://snomed.info/sct", "code": ACVPU["V" if sick else "A"]}]
    }
    entries.append(acvpu)
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": e, "request": {"method": "POST", "url": "Observation"}} for e in entries
        ],
    }


def write_load(base: str, ids: list[str], clients: int, seed: int) -> float:
    rng = random.Random(seed)
    bundles = [vitals_bundle(pid, rng) for pid in ids]
    shares = [bundles[i::clients] for i in range(clients)]

    def run(share: list[dict[str, Any]]) -> None:
        with httpx.Client(timeout=120) as client:
            for bundle in share:
                response = client.post(f"{base}/fhir", json=bundle)
                response.raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(run, shares))
    return time.perf_counter() - started


def process_cpu_s(pid: int, descendants: bool = True) -> float:
    """User + system CPU seconds so far (Linux /proc) of a process, its threads included, and
    of its running descendants (the hub's worker process, which scores the vitals)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # it ended
        return 0.0
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    if not descendants:
        return total
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        total += sum(process_cpu_s(int(child)) for child in children)
    return total


def board_count(base: str) -> int:
    response = httpx.get(f"{base}/plugins/vitals/api/board", timeout=60)
    response.raise_for_status()
    return len(response.json()["patients"])


def one_round(plugins: str, args: argparse.Namespace, seed: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="vitals-bench-") as tmp:
        server, base = serve(Path(tmp), plugins)
        try:
            ids = [f"bench-{i:05d}" for i in range(args.patients)]
            create_patients(base, ids)
            time.sleep(1.0)  # let the consumers pass the Patients
            cpu_before = process_cpu_s(server.pid)
            api_before = process_cpu_s(server.pid, descendants=False)
            started = time.perf_counter()
            write_s = write_load(base, ids, args.clients, seed)
            result = {"write_s": write_s}
            if "-vitals" not in plugins:
                while board_count(base) < args.patients:
                    time.sleep(0.2)
                result["scored_s"] = time.perf_counter() - started
            # The server's CPU for the whole load (scoring included): less noisy than wall time.
            result["server_cpu_s"] = process_cpu_s(server.pid) - cpu_before
            result["api_cpu_s"] = process_cpu_s(server.pid, descendants=False) - api_before
            return result
        finally:
            stop(server)


def alert_latency(args: argparse.Namespace) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="vitals-bench-") as tmp:
        server, base = serve(Path(tmp), "-mpi")
        try:
            ids = [f"alert-{i:04d}" for i in range(args.alerts)]
            create_patients(base, ids)
            received: dict[str, float] = {}
            ready = threading.Event()
            done = threading.Event()

            def listen() -> None:
                with httpx.stream("GET", f"{base}/plugins/vitals/api/stream", timeout=None) as r:
                    ready.set()
                    data = ""
                    for line in r.iter_lines():
                        if done.is_set():
                            return
                        if line.startswith("data: "):
                            data = line[6:]
                        elif not line and data:
                            event = json.loads(data)
                            data = ""
                            if event.get("type") == "alert":
                                received.setdefault(event["patient"], time.perf_counter())

            thread = threading.Thread(target=listen, daemon=True)
            thread.start()
            ready.wait(30)
            time.sleep(0.5)
            rng = random.Random(7)
            latencies = []
            with httpx.Client(timeout=60) as client:
                for pid in ids:
                    bundle = vitals_bundle(pid, rng, high=True)
                    sent = time.perf_counter()
                    client.post(f"{base}/fhir", json=bundle).raise_for_status()
                    deadline = time.perf_counter() + 30
                    while pid not in received and time.perf_counter() < deadline:
                        time.sleep(0.005)
                    if pid in received:
                        latencies.append(received[pid] - sent)
                    time.sleep(0.2)
            done.set()
            return latencies
        finally:
            stop(server)


def cpu_split(patients: int, seed: int) -> tuple[float, float]:
    """(write CPU s, scoring CPU s) in one process (module docstring, 3)."""
    os.environ["FHIRHUB_VITALS_BATCH_PAUSE_MS"] = "0"
    from fhirhub.core.dispatcher import log_head, read_versions
    from fhirhub.core.hub import build_hub
    from fhirhub.core.settings import Settings
    from fhirhub.plugins.vitals.consumer import handle_versions
    from fhirhub.plugins.vitals.service import service_of
    from fhirhub.sdk import SYSTEM, acting_as, process_bundle

    with tempfile.TemporaryDirectory(prefix="vitals-cpu-") as tmp:
        work = Path(tmp)
        hub = build_hub(
            Settings(
                db=f"sqlite:///{work / 'hub.db'}",
                data_dir=work,
                listeners=False,
                auth="off",
                plugins="-mpi",
            )
        )
        try:
            service = service_of(hub)
            ids = [f"cpu-{i:05d}" for i in range(patients)]
            with acting_as(SYSTEM):
                process_bundle(
                    hub,
                    {
                        "resourceType": "Bundle",
                        "type": "transaction",
                        "entry": [
                            {
                                "resource": {"resourceType": "Patient", "id": pid},
                                "request": {"method": "PUT", "url": f"Patient/{pid}"},
                            }
                            for pid in ids
                        ],
                    },
                )
                with hub.store.read() as conn:
                    head = log_head(conn)
                rng = random.Random(seed)
                bundles = [vitals_bundle(pid, rng) for pid in ids]
                started = time.process_time()
                for bundle in bundles:
                    process_bundle(hub, bundle)
                write = time.process_time() - started
                with hub.store.read() as conn:
                    versions = read_versions(conn, head, 10_000_000)
                started = time.process_time()
                for i in range(0, len(versions), 70):
                    handle_versions(service, versions[i : i + 70], full=False)
                scoring = time.process_time() - started
        finally:
            hub.close()
    return write, scoring


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f} (median {statistics.median(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--alerts", type=int, default=30)
    parser.add_argument("--cpu", action="store_true", help="only the in-process CPU split")
    args = parser.parse_args()
    if args.cpu:
        splits = [cpu_split(args.patients, seed) for seed in range(args.rounds)]
        for write, scoring in splits:
            print(f"write {write:.2f} s CPU, scoring {scoring:.2f} s CPU ({scoring / write:.2f})")
        print(f"scoring/write CPU: {spread([s / w for w, s in splits])}")
        return

    off: list[float] = []
    on: list[float] = []
    scored: list[float] = []
    cpu_off: list[float] = []
    cpu_on: list[float] = []
    for round_no in range(args.rounds):
        a = one_round("-mpi,-vitals", args, seed=round_no)
        b = one_round("-mpi", args, seed=round_no)
        off.append(a["write_s"])
        on.append(b["write_s"])
        scored.append(b["scored_s"])
        cpu_off.append(a["server_cpu_s"])
        cpu_on.append(b["server_cpu_s"])
        print(
            f"round {round_no + 1}: write {a['write_s']:.2f} s without vitals, "
            f"{b['write_s']:.2f} s with (ratio {b['write_s'] / a['write_s']:.2f}); "
            f"all {args.patients} scored on the board after {b['scored_s']:.2f} s; "
            f"server CPU {a['server_cpu_s']:.1f} s without, {b['server_cpu_s']:.1f} s with "
            f"(ratio {b['server_cpu_s'] / a['server_cpu_s']:.2f}; API process alone "
            f"{a['api_cpu_s']:.1f} s and {b['api_cpu_s']:.1f} s)",
            flush=True,
        )
    ratios = [b / a for a, b in zip(off, on, strict=True)]
    latencies = alert_latency(args)
    observations = args.patients * 7
    report = {
        "date": datetime.now(UTC).date().isoformat(),
        "patients": args.patients,
        "observations": observations,
        "clients": args.clients,
        "write_s_without": off,
        "write_s_with": on,
        "ratio_with_over_without": ratios,
        "scored_on_board_s": scored,
        "server_cpu_s_without": cpu_off,
        "server_cpu_s_with": cpu_on,
        "server_cpu_ratio": [b / a for a, b in zip(cpu_off, cpu_on, strict=True)],
        "alert_latency_s": sorted(latencies),
        "alert_latency_p50_s": statistics.median(latencies) if latencies else None,
        "alert_latency_p90_s": (
            statistics.quantiles(latencies, n=10)[-1] if len(latencies) >= 10 else None
        ),
        "alerts_received": f"{len(latencies)}/{args.alerts}",
    }
    print(f"write {observations} Observations without vitals: {spread(off)} s")
    print(f"write {observations} Observations with vitals:    {spread(on)} s")
    print(f"ratio with/without: {spread(ratios)} (target <= 1.20)")
    print(f"every patient scored (board) after: {spread(scored)} s")
    cpu_ratios = [b / a for a, b in zip(cpu_off, cpu_on, strict=True)]
    print(f"server CPU with/without (scoring included): {spread(cpu_ratios)}")
    if latencies:
        print(
            f"alert delivery to an open stream: p50 {report['alert_latency_p50_s']:.3f} s, "
            f"max {max(latencies):.3f} s ({report['alerts_received']} received; target p50 < 1 s)"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
