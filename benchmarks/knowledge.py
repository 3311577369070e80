"""Knowledge plugin benchmark: what the order check adds to a MedicationRequest write, and
``$graph`` depth 2 from a common diagnosis, over HTTP against ``fhirhub serve``, in one run.

1. A fresh SQLite file gets the whole shipped graph (``fhirhub knowledge load all``) and
   ``--patients`` patients, each with hypertension and warfarin (POSTed over HTTP).
2. Two ``fhirhub serve`` processes share that file, ``--rounds`` times: one with the order
   check (the default), one without it (``FHIRHUB_KNOWLEDGE_CHECK_ORDERS=false``, the
   reference). Each round POSTs ``--orders`` MedicationRequests to each, one at a time,
   alternating between the two; half are ibuprofen (an interaction with warfarin: a
   DetectedIssue is written), half amlodipine (nothing found).
   Reported: p50/p90 of each, and the difference of the p50s (the check's cost).
3. ``GET /fhir/$graph?start=ICD10CM|I10&depth=2`` (hypertension, both directions, the
   default limit of 200 edges), ``--queries`` times each, the Bundle and compact views
   alternately, once the index has caught up with the load: p50/p90.

    .venv/bin/python benchmarks/knowledge.py [--orders 200 --rounds 3]

Figures go to stdout and to benchmarks/results/knowledge-sqlite.json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(db_url: str, work: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    full_env = {
        **os.environ,
        "FHIRHUB_DATA_DIR": str(work),
        "FHIRHUB_AUTH": "off",
        "FHIRHUB_KNOWLEDGE_LOAD_WITH_DEMO": "false",
        **env,
    }
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


def order(patient: str, text: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": patient},
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": code, "display": text}],
            "text": text,
        },
    }


def seed(base: str, count: int) -> list[str]:
    patients = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for n in range(count):
            pid = client.post(
                "/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": f"B{n}"}]}
            ).json()["id"]
            ref = f"Patient/{pid}"
            client.post(
                "/fhir/Condition",
                json={
                    "resourceType": "Condition",
                    "subject": {"reference": ref},
                    "code": {
                        "coding": [
                            {
                                "system": "http://snomed.info/sct",
                                "code": "38341003",
                                "display": "Hypertension",
                            }
                        ]
                    },
                },
            ).raise_for_status()
            client.post(
                "/fhir/MedicationRequest",
                json=order(ref, "Warfarin Sodium 5 MG Oral Tablet", "855332"),
            ).raise_for_status()
            patients.append(ref)
    return patients


def time_orders(bases: list[str], patients: list[str], count: int) -> list[list[float]]:
    """``count`` orders to each server, alternating one by one (the machine's noise falls on
    both alike); returns the timings per server."""
    timings: list[list[float]] = [[] for _ in bases]
    clients = [httpx.Client(base_url=base, timeout=30) for base in bases]
    try:
        for n in range(count):
            patient = patients[n % len(patients)]
            body = (
                order(patient, "Ibuprofen 400 MG Oral Tablet", "197806")
                if n % 2 == 0
                else order(patient, "Amlodipine 5 MG Oral Tablet", "197361")
            )
            for which, client in enumerate(clients):
                started = time.perf_counter()
                response = client.post("/fhir/MedicationRequest", json=body)
                timings[which].append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
    finally:
        for client in clients:
            client.close()
    return timings


def time_graph(base: str, queries: int) -> dict[str, tuple[list[float], int]]:
    """The Bundle and compact views, query by query alternately (both see the same load)."""
    views = ("", "compact")
    timings: dict[str, list[float]] = {view: [] for view in views}
    edges: dict[str, int] = {}
    with httpx.Client(base_url=base, timeout=30) as client:
        for view in views:
            params = {"start": "ICD10CM|I10", "depth": "2", **({"view": view} if view else {})}
            client.get("/fhir/$graph", params=params).raise_for_status()  # warm
        for _ in range(queries):
            for view in views:
                params = {"start": "ICD10CM|I10", "depth": "2", **({"view": view} if view else {})}
                started = time.perf_counter()
                response = client.get("/fhir/$graph", params=params)
                timings[view].append((time.perf_counter() - started) * 1000)
                data = response.json()
                edges[view] = len(data["edges"]) if view else data["total"]
    return {view: (timings[view], edges[view]) for view in views}


def wait_for_graph(base: str) -> None:
    """Until the consumer has indexed the whole loaded graph (it rebuilds the in-memory graph
    after each batch, which would otherwise be timed): the depth-2 answer unchanged for three
    polls a second apart."""
    seen: list[int] = []
    for _ in range(300):
        graph = httpx.get(
            f"{base}/fhir/$graph", params={"start": "ICD10CM|I10", "depth": "2", "view": "compact"}
        ).json()
        seen.append(len(graph["edges"]))
        if len(seen) >= 3 and seen[-1] and seen[-1] == seen[-2] == seen[-3]:
            return
        time.sleep(1.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fhirhub-knowledge-bench-"))
    db_url = f"sqlite:///{work / 'hub.db'}"
    env = {**os.environ, "FHIRHUB_DATA_DIR": str(work), "FHIRHUB_AUTH": "off"}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "fhirhub.core.cli", "knowledge", "load", "all", "--db", db_url],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    load_s = round(time.perf_counter() - started, 1)
    server, base = serve(db_url, work, {})
    try:
        patients = seed(base, args.patients)
        wait_for_graph(base)
        graphs = time_graph(base, args.queries)
        graph_bundle, edges_bundle = graphs[""]
        graph_compact, edges_compact = graphs["compact"]
    finally:
        server.terminate()
        server.wait()
    checked: list[float] = []
    reference: list[float] = []
    # Even positions are ibuprofen (a finding, a DetectedIssue written), odd amlodipine (none).
    for _ in range(args.rounds):
        servers = [
            serve(db_url, work, {"FHIRHUB_KNOWLEDGE_CHECK_ORDERS": setting})
            for setting in ("true", "false")
        ]
        try:
            bases = [base for _, base in servers]
            time_orders(bases, patients, 10)  # warm: the graph is built on first use
            with_check, without = time_orders(bases, patients, args.orders)
            checked += with_check
            reference += without
        finally:
            for server, _ in servers:
                server.terminate()
                server.wait()
    result = {
        "load_all_s": load_s,
        "order_write_checked_ms": {
            "p50": percentile(checked, 0.5),
            "p90": percentile(checked, 0.9),
        },
        "order_write_reference_ms": {
            "p50": percentile(reference, 0.5),
            "p90": percentile(reference, 0.9),
        },
        "order_check_adds_p50_ms": round(percentile(checked, 0.5) - percentile(reference, 0.5), 2),
        "order_write_ratio_p50": round(
            statistics.median(checked) / statistics.median(reference), 2
        ),
        "no_finding_adds_p50_ms": round(
            statistics.median(checked[1::2]) - statistics.median(reference[1::2]), 2
        ),
        "with_finding_adds_p50_ms": round(
            statistics.median(checked[0::2]) - statistics.median(reference[0::2]), 2
        ),
        "graph_depth2_bundle_ms": {
            "p50": percentile(graph_bundle, 0.5),
            "p90": percentile(graph_bundle, 0.9),
            "edges": edges_bundle,
        },
        "graph_depth2_compact_ms": {
            "p50": percentile(graph_compact, 0.5),
            "p90": percentile(graph_compact, 0.9),
            "edges": edges_compact,
        },
        "orders_per_setting": len(checked),
    }
    print(json.dumps(result, indent=2))
    out = REPO / "benchmarks" / "results" / "knowledge-sqlite.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
