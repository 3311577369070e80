"""Subscriptions benchmark: what 100 active subscriptions cost Synthea ingest, and how long a
notification takes from commit to receipt, over real HTTP against `fhirhub serve`.

Each round starts a fresh server (its own SQLite file) and loads the same Synthea
transaction Bundles of ../shared/data/synthea over HTTP, twice: once with no subscription
(the reference) and once with 100 active rest-hook subscriptions of varied criteria (codes,
value comparisons, chains, token modifiers, several types) POSTing to a receiver (a process of
its own) on loopback. Reported: the ingest time of each and their ratio; commit->receipt
latency of every event during the load and of single writes on a quiet hub afterwards.

Commit time during the load: an event's timestamp is its version's ``lastUpdated``, stamped
when the entry is processed inside its transaction Bundle, so ``receipt - timestamp`` also
counts the rest of the Bundle's processing before the commit (``latency_from_version_ms``).
The commit of a Bundle follows the last ``lastModified`` of its response entries (only the
flush of its rows lies between) and precedes the client's receipt of the response, so
``receipt - last stamp of the event's Bundle`` is an upper bound of commit-to-receipt
(``latency_under_load_ms``, the figure compared with the target) and ``receipt - response
received`` a lower bound (``latency_under_load_lower_ms``).

The hub's CPU seconds (user + system, from /proc; the API process and its descendants: the
worker process that serves the subscriptions consumer under ``fhirhub serve`` on a machine of
several cores, and the rest-hook sender processes) are reported too, the machine being shared:
during the load (``hub_cpu_ingest_s``), until the last event arrived (``hub_cpu_drained_s``)
and until the hub went idle, the other plugins' consumers included (``hub_cpu_settled_s``,
the figure to compare with and without), with the split per thread (names from ``py-spy
dump``); ``notifications_per_round`` counts the POSTs that carried events. With
``BENCH_PYSPY_DIR=dir`` each run's hub is recorded by ``py-spy record -r 50`` (raw format,
extra options in ``BENCH_PYSPY_ARGS``).

    .venv/bin/python benchmarks/subscriptions.py                  # 20 bundles, 2 rounds
    .venv/bin/python benchmarks/subscriptions.py --limit 100 --rounds 3
    .venv/bin/python benchmarks/subscriptions.py --websockets 1000   # websocket fan-out only

Figures go to stdout and to benchmarks/results/subscriptions-sqlite.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson

REPO = Path(__file__).resolve().parent.parent
SYNTHEA = REPO.parent / "shared" / "data" / "synthea"
HEADERS = {"Content-Type": "application/fhir+json", "Prefer": "return=minimal"}

#: Varied criteria, cycled to make 100 subscriptions.
CRITERIA = [
    "Observation?code=http://loinc.org|8302-2",
    "Observation?code=http://loinc.org|29463-7&value-quantity=gt80",
    "Observation?code=http://loinc.org|2339-0&value-quantity=gt100",
    "Observation?code=http://loinc.org|8867-4",
    "Observation?code:not=http://loinc.org|8302-2&category=vital-signs",
    "Observation?subject:Patient.gender=female&code=http://loinc.org|8480-6",
    "Condition?clinical-status=active",
    "Condition?code=http://snomed.info/sct|44054006",
    "Encounter?class=AMB",
    "Encounter?status=finished",
    "Patient?gender=female",
    "Patient?address-state=Massachusetts",
    "MedicationRequest?status=active",
    "Procedure?status=completed",
    "Immunization?status=completed",
    "DiagnosticReport?status=final",
    "AllergyIntolerance?criticality=high",
    "CarePlan?status=active",
    "Claim?status=active",
    "Observation?status=final&code=http://loinc.org|72514-3",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def instant_seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Receiver:
    """The rest-hook endpoint, in a process of its own (its HTTP handling would otherwise
    take the load's clients' interpreter lock): records, per event, its receipt time and
    timestamp."""

    def __init__(self) -> None:
        self._conn, child = multiprocessing.Pipe()
        self._lock = threading.Lock()
        self._process = multiprocessing.Process(target=_receive, args=(child,), daemon=True)
        self._process.start()
        self.url = f"http://127.0.0.1:{self._conn.recv()}/hook"

    def _ask(self, command: str) -> Any:
        with self._lock:
            self._conn.send(command)
            return self._conn.recv()

    def reset(self) -> None:
        """Forget what arrived; events committed before now are not counted."""
        self._ask("reset")

    @property
    def events(self) -> int:
        return int(self._ask("count"))

    @property
    def posts(self) -> int:
        """Notifications carrying events received since the last reset."""
        return int(self._ask("posts"))

    @property
    def received(self) -> list[tuple[float, str]]:
        """(receipt time, event timestamp) of each event since the last reset."""
        return list(self._ask("dump"))


def _receive(conn: Any) -> None:
    """The receiver process: an HTTP server, and commands from the benchmark on ``conn``."""
    received: list[tuple[float, str]] = []
    posts = [0]  # notifications (POSTs) since the last reset
    since = [0.0]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            now = time.time()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            status = orjson.loads(body)["entry"][0]["resource"]
            stamps = [
                part["valueInstant"]
                for p in status["parameter"]
                if p["name"] == "notification-event"
                for part in p["part"]
                if part["name"] == "timestamp"
            ]
            with lock:
                fresh = [(now, s) for s in stamps if instant_seconds(s) >= since[0]]
                received.extend(fresh)
                posts[0] += bool(fresh)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    conn.send(server.server_address[1])
    while True:
        command = conn.recv()
        with lock:
            if command == "reset":
                received.clear()
                posts[0] = 0
                since[0] = time.time()
                conn.send(None)
            elif command == "count":
                conn.send(len(received))
            elif command == "dump":
                conn.send(list(received))
            elif command == "posts":
                conn.send(posts[0])


def start_server(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "FHIRHUB_DATA_DIR": str(work),
        "FHIRHUB_PLUGINS": os.environ.get("FHIRHUB_PLUGINS", "-mpi"),
        "FHIRHUB_AUTH": "off",
        "FHIRHUB_LISTENERS": "off",
    }
    db_url = f"sqlite:///{work / 'hub.db'}"
    server = subprocess.Popen(
        [sys.executable, "-m", "fhirhub.core.cli", "serve", "--port", str(port), "--db", db_url],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(work / "server.log", "wb"),  # noqa: SIM115
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return server, base
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its running descendants (the hub's worker process, sender processes)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found += process_tree(int(child))
    return found


def cpu_of(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of process ``pid`` and of its descendants
    (the worker process serves the subscriptions consumer), by thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, float] = {}
    for process in process_tree(pid):
        try:
            tasks = list(Path(f"/proc/{process}/task").iterdir())
        except OSError:  # the process ended
            continue
        for task in tasks:
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # the thread ended
                continue
            found[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return found


def thread_names(pid: int) -> dict[int, str]:
    """Thread id -> Python thread name, from ``py-spy dump`` when it is installed, for the
    process and its descendants (a worker process's threads named ``worker:<name>``, sender
    processes ``sender``)."""
    spy = Path(sys.executable).parent / "py-spy"
    names: dict[int, str] = {}
    for process in process_tree(pid):
        try:
            command = Path(f"/proc/{process}/cmdline").read_bytes()
        except OSError:
            continue
        if b"sendproc" in command:
            names.update(
                dict.fromkeys(
                    (int(t.name) for t in Path(f"/proc/{process}/task").iterdir()), "sender"
                )
            )
            continue
        prefix = "worker:" if b"worker_process" in command else ""
        try:
            out = subprocess.run(
                [str(spy), "dump", "--pid", str(process)],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        for line in out.splitlines():
            if line.startswith("Thread ") and '"' in line:
                names[int(line.split()[1])] = prefix + line.split('"')[1]
    return names


def cpu_by_thread(before: dict[int, float], after: dict[int, float], pid: int) -> dict[str, float]:
    """CPU seconds spent between two ``cpu_of`` snapshots, per thread name (pool workers'
    numbered names grouped)."""
    names = thread_names(pid)
    split: dict[str, float] = {}
    for tid, seconds in after.items():
        name = names.get(tid, "(native)").rstrip("0123456789_").rstrip("-_ ")
        split[name] = split.get(name, 0.0) + seconds - before.get(tid, 0.0)
    return {k: round(v, 2) for k, v in sorted(split.items(), key=lambda kv: -kv[1]) if v >= 0.01}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_once(
    bundles: list[bytes], subscriptions: int, receiver: Receiver, clients: int
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="fhirhub-bench-subs-"))
    server, base = start_server(work)
    try:
        with httpx.Client(base_url=f"{base}/fhir", timeout=300) as client:
            for index in range(subscriptions):
                resource = {
                    "resourceType": "Subscription",
                    "status": "requested",
                    "reason": "benchmark",
                    "criteria": CRITERIA[index % len(CRITERIA)],
                    "channel": {
                        "type": "rest-hook",
                        "endpoint": f"{receiver.url}/{index}",
                        "payload": "application/fhir+json",
                    },
                }
                if index % 2:  # half id-only, half full-resource
                    resource["channel"]["_payload"] = {
                        "extension": [
                            {
                                "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content",
                                "valueCode": "id-only",
                            }
                        ]
                    }
                client.post("/Subscription", json=resource).raise_for_status()
            time.sleep(1.0)  # handshakes out of the way
            receiver.reset()

            # Per event timestamp: the last stamp of its Bundle and when the response came.
            commits: dict[str, tuple[float, float]] = {}

            def post(raw: bytes) -> None:
                response = client.post("", content=raw, headers=HEADERS)
                received = time.time()
                response.raise_for_status()
                stamps = [
                    e["response"]["lastModified"]
                    for e in response.json().get("entry", [])
                    if "lastModified" in e.get("response", {})
                ]
                last = max((instant_seconds(s) for s in stamps), default=received)
                commits.update(dict.fromkeys(stamps, (last, received)))

            spy = None
            if profile := os.environ.get("BENCH_PYSPY_DIR"):  # py-spy record of the hub
                out = Path(profile) / f"hub-{subscriptions}-{time.time():.0f}.txt"
                spy = subprocess.Popen(
                    [str(Path(sys.executable).parent / "py-spy"), "record", "-r", "50", "-t"]
                    + os.environ.get("BENCH_PYSPY_ARGS", "").split()
                    + ["-f", "raw", "-o", str(out), "--pid", str(server.pid)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(1.0)
            cpu_start = cpu_of(server.pid)
            start, started = time.perf_counter(), time.time()
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(post, bundles))
            ingest_s = time.perf_counter() - start
            cpu_ingest = cpu_of(server.pid)
            drained_s = float("nan")
            if subscriptions:
                # The hub's CPU is taken once nothing arrived for a second, before the
                # $status requests below (which cost the hub CPU of their own).
                count, quiet_since = -1, time.monotonic()
                while time.monotonic() - quiet_since < 1.0:
                    time.sleep(0.05)
                    if (now_count := receiver.events) != count:
                        count, quiet_since = now_count, time.monotonic()
            cpu_drained = cpu_of(server.pid)
            # Then until the hub is idle (the other plugins' consumers catch up after a load
            # too): the CPU the whole load cost the hub, comparable with and without.
            cpu_settled = cpu_drained
            for _ in range(120):
                time.sleep(0.5)
                cpu_now = cpu_of(server.pid)
                if sum(cpu_now.values()) - sum(cpu_settled.values()) < 0.03:
                    break
                cpu_settled = cpu_now
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=60)
            threads = cpu_by_thread(cpu_start, cpu_settled, server.pid)
            if subscriptions:
                expected = _expected_events(client, subscriptions)
                deadline = time.monotonic() + 600
                while receiver.events < expected and time.monotonic() < deadline:
                    time.sleep(0.05)
            received = receiver.received
            posts = receiver.posts
            if subscriptions:
                # When the last event arrived (the wait for $status to settle is not counted).
                drained_s = max((t for t, _ in received), default=started) - started
            load_version = [(now - instant_seconds(stamp)) * 1000 for now, stamp in received]
            load_latencies, load_lower = [], []
            for now, stamp in received:
                last, responded = commits.get(stamp, (instant_seconds(stamp), float("nan")))
                load_latencies.append((now - last) * 1000)
                load_lower.append((now - responded) * 1000)
            events = len(received)
            quiet: list[float] = []
            if subscriptions:
                receiver.reset()
                for value in range(50):  # single writes on a quiet hub
                    client.post(
                        "/Observation",
                        json={
                            "resourceType": "Observation",
                            "status": "final",
                            "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
                            "valueQuantity": {"value": 150 + value, "unit": "mg/dL"},
                        },
                    ).raise_for_status()
                    time.sleep(0.05)
                time.sleep(1.0)
                quiet = [(now - instant_seconds(stamp)) * 1000 for now, stamp in receiver.received]
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "subscriptions": subscriptions,
        "ingest_s": ingest_s,
        # The hub process's CPU seconds during the load, and until every event was received.
        "hub_cpu_ingest_s": sum(cpu_ingest.values()) - sum(cpu_start.values()),
        "hub_cpu_drained_s": sum(cpu_drained.values()) - sum(cpu_start.values()),
        "hub_cpu_settled_s": sum(cpu_settled.values()) - sum(cpu_start.values()),
        "hub_cpu_by_thread_s": threads,
        "all_delivered_s": drained_s,
        "events": events,
        "notifications": posts,
        "load_latency_ms": load_latencies,
        "load_lower_ms": [x for x in load_lower if x == x],
        "load_version_ms": load_version,
        "quiet_latency_ms": quiet,
    }


def _expected_events(client: httpx.Client, subscriptions: int) -> int:
    """The events the hub queued, from each subscription's ``$status``, once it has caught up."""
    ids = [
        e["resource"]["id"]
        for e in client.get("/Subscription", params={"_count": subscriptions, "_elements": "id"})
        .json()
        .get("entry", [])
    ]
    previous, stable = -1, 0
    while stable < 3:
        total = 0
        for sid in ids:
            status = client.get(f"/Subscription/{sid}/$status").json()["entry"][0]["resource"]
            total += int(
                next(
                    p["valueString"]
                    for p in status["parameter"]
                    if p["name"] == "events-since-subscription-start"
                )
            )
        stable = stable + 1 if total == previous else 0
        previous = total
        time.sleep(1.0)
    return previous


def websocket_fanout(clients: int, writes: int) -> dict[str, Any]:
    """``clients`` websockets bound to one subscription on one server; each write's delivery
    latency (commit -> receipt) at every client."""
    import asyncio

    import websockets

    work = Path(tempfile.mkdtemp(prefix="fhirhub-bench-ws-"))
    server, base = start_server(work)
    latencies: list[float] = []
    try:
        with httpx.Client(base_url=f"{base}/fhir", timeout=60) as client:
            created = client.post(
                "/Subscription",
                json={
                    "resourceType": "Subscription",
                    "status": "requested",
                    "reason": "benchmark",
                    "criteria": "Observation?code=http://loinc.org|2339-0",
                    "channel": {"type": "websocket"},
                },
            ).json()
            token = client.get(f"/Subscription/{created['id']}/$get-ws-binding-token").json()
            value = next(p["valueString"] for p in token["parameter"] if p["name"] == "token")
            url = f"ws://{base.removeprefix('http://')}/plugins/subscriptions/ws"

            async def one(ready: asyncio.Event, bound: list[int]) -> None:
                async with websockets.connect(url, open_timeout=60, ping_interval=None) as socket:
                    await socket.send(f"bind-with-token {value}")
                    await socket.recv()  # handshake
                    bound.append(1)
                    if len(bound) == clients:
                        ready.set()
                    received = 0
                    while received < writes:
                        text = await asyncio.wait_for(socket.recv(), 120)
                        now = time.time()
                        status = orjson.loads(text)["entry"][0]["resource"]
                        for p in status["parameter"]:
                            if p["name"] == "notification-event":
                                stamp = next(x for x in p["part"] if x["name"] == "timestamp")
                                latencies.append(
                                    (now - instant_seconds(stamp["valueInstant"])) * 1000
                                )
                                received += 1

            async def run() -> None:
                ready, bound = asyncio.Event(), []
                tasks = [asyncio.create_task(one(ready, bound)) for _ in range(clients)]
                await asyncio.wait_for(ready.wait(), 300)
                loop = asyncio.get_running_loop()
                for index in range(writes):
                    body = {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
                        "valueQuantity": {"value": 100 + index, "unit": "mg/dL"},
                    }
                    await loop.run_in_executor(
                        None, lambda b=body: client.post("/Observation", json=b)
                    )
                    await asyncio.sleep(0.5)
                await asyncio.wait_for(asyncio.gather(*tasks), 300)

            asyncio.run(run())
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "websocket_clients": clients,
        "writes": writes,
        "deliveries": len(latencies),
        "delivery_ms": {
            "p50": percentile(latencies, 0.5),
            "p99": percentile(latencies, 0.99),
            "max": max(latencies, default=float("nan")),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=20, help="number of Synthea bundles")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each mode")
    parser.add_argument("--subscriptions", type=int, default=100)
    parser.add_argument("--clients", type=int, default=2, help="concurrent HTTP clients")
    parser.add_argument(
        "--websockets", type=int, default=0, help="only the websocket fan-out: this many clients"
    )
    parser.add_argument("--writes", type=int, default=10, help="writes in the websocket run")
    args = parser.parse_args()
    if args.websockets:
        figures = websocket_fanout(args.websockets, args.writes)
        print(json.dumps(figures, indent=2))
        out = REPO / "benchmarks" / "results" / "subscriptions-websockets.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(figures, indent=2) + "\n")
        return 0
    if not SYNTHEA.is_dir():
        print(f"Synthea data not found at {SYNTHEA}", file=sys.stderr)
        return 2
    bundles = [f.read_bytes() for f in sorted(SYNTHEA.glob("*.json"))[: args.limit]]
    resources = sum(len(orjson.loads(b)["entry"]) for b in bundles)
    receiver = Receiver()
    runs: list[dict[str, Any]] = []
    for _ in range(args.rounds):
        runs.append(run_once(bundles, 0, receiver, args.clients))
        runs.append(run_once(bundles, args.subscriptions, receiver, args.clients))
    plain = [r["ingest_s"] for r in runs if r["subscriptions"] == 0]
    subscribed = [r for r in runs if r["subscriptions"]]
    ratios = [s["ingest_s"] / p for s, p in zip(subscribed, plain, strict=True)]
    load = [x for r in subscribed for x in r["load_latency_ms"]]
    lower = [x for r in subscribed for x in r["load_lower_ms"]]
    version = [x for r in subscribed for x in r["load_version_ms"]]
    quiet = [x for r in subscribed for x in r["quiet_latency_ms"]]
    figures = {
        "backend": "sqlite",
        "bundles": len(bundles),
        "resources": resources,
        "subscriptions": args.subscriptions,
        "rounds": args.rounds,
        "ingest_s_without": plain,
        "ingest_s_with": [r["ingest_s"] for r in subscribed],
        "slowdown_ratio": ratios,
        "hub_cpu_ingest_s_without": [r["hub_cpu_ingest_s"] for r in runs if not r["subscriptions"]],
        "hub_cpu_ingest_s_with": [r["hub_cpu_ingest_s"] for r in subscribed],
        "hub_cpu_drained_s_with": [r["hub_cpu_drained_s"] for r in subscribed],
        "hub_cpu_settled_s_without": [
            r["hub_cpu_settled_s"] for r in runs if not r["subscriptions"]
        ],
        "hub_cpu_settled_s_with": [r["hub_cpu_settled_s"] for r in subscribed],
        "hub_cpu_by_thread_s": [r["hub_cpu_by_thread_s"] for r in runs],
        "slowdown_ratio_median": statistics.median(ratios),
        "all_delivered_s": [r["all_delivered_s"] for r in subscribed],
        "events_per_round": [r["events"] for r in subscribed],
        "notifications_per_round": [r["notifications"] for r in subscribed],
        "latency_under_load_ms": {
            "p50": percentile(load, 0.5),
            "p99": percentile(load, 0.99),
            "max": max(load, default=float("nan")),
        },
        "latency_under_load_lower_ms": {
            "p50": percentile(lower, 0.5),
            "p99": percentile(lower, 0.99),
        },
        "latency_from_version_ms": {
            "p50": percentile(version, 0.5),
            "p99": percentile(version, 0.99),
        },
        "load_average": os.getloadavg(),
        "latency_quiet_ms": {"p50": percentile(quiet, 0.5), "p99": percentile(quiet, 0.99)},
    }
    print(json.dumps(figures, indent=2))
    results = REPO / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / "subscriptions-sqlite.json").write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
