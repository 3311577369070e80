"""Sustained HL7 v2 throughput over MLLP, end to end (send, convert, commit, ACK), SQLite.

A real MLLP client (``--connections`` sockets, TCP_NODELAY, one message in flight per
connection, as MLLP senders work) sends ``--count`` distinct ADT^A01 and then ORU^R01
messages built from the synthetic fixtures (unique MSH-10 each, 500 distinct patient MRNs,
each ADT^A01 a new visit: unique PV1-19 visit number; each ORU^R01 a new order: unique placer
and filler order numbers).
The client runs in its own process, as a sending system does (``--same-process`` runs its
threads inside the hub's process instead, where they compete for the hub's interpreter lock). Printed:
messages/s per type, and hl7apy's parse-only rate for the same messages in the same run (the
mean of one measurement just before and one just after the MLLP run), with the ratio, the mean
number of messages the listener committed per transaction (group commit), and the share of
messages whose conversion a worker process had ready (``--convert-processes``, default as the
hub configures it: one worker on a machine with more than one core), and the hub process's
own CPU time per message (all its threads; not the workers', not the client's).

Second reference, the hub's own REST ingest in the same run: the same kind of message
(``--rest-count`` of them, other control ids and the same patients), converted to its FHIR
transaction Bundle beforehand, POSTed to ``/fhir`` of the same hub (uvicorn in the hub's
process, auth off, as ``benchmarks/ingest.py`` runs it) by a client process over one kept-alive
HTTP connection, one Bundle at a time: Bundles/s, half just before and half just after the
MLLP run, and the MLLP rate's ratio to it. Run:
``.venv/bin/python benchmarks/hl7_mllp.py --count 2000`` (``--connections 1`` for one feed).
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# This checkout's code, not whatever an editable install of the package points at.
sys.path.insert(0, str(REPO))
FIXTURES = REPO / "tests" / "adapters" / "hl7" / "fixtures"


def messages(name: str, count: int) -> list[bytes]:
    template = (FIXTURES / name).read_bytes().replace(b"\n", b"\r")
    control = b"CTRL-A01-1" if b"ADT^A01" in template else b"CTRL-ORU-1"
    # Each ORU^R01 reports a new order's results (its own placer and filler numbers) and each
    # ADT^A01 admits a new visit (its own visit number), as a live feed does: the same numbers
    # again would be an update of the results or of the encounter stored (the ADT^A01 fixture's
    # one visit number made every message an update of one Encounter, moved between patients).
    return [
        template.replace(control, b"BENCH-%d-%s" % (i, name.encode()))
        .replace(b"MRN123", b"MRN%07d" % (i % 500))
        .replace(b"|PL-77|FL-88^", b"|PL-%d|FL-%d^" % (i, i))
        .replace(b"|VN-555|", b"|VN-%d|" % i)
        for i in range(count)
    ]


def send_all(port: int, batch: list[bytes], connections: int) -> float:
    chunks = [batch[i::connections] for i in range(connections)]
    failures: list[str] = []

    def client(items: list[bytes]) -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for item in items:
                sock.sendall(b"\x0b" + item + b"\x1c\r")
                data = b""
                while not data.endswith(b"\x1c\r"):
                    data += sock.recv(65536)
                if b"MSA|AA" not in data and b"MSA|CA" not in data:
                    failures.append(data.decode(errors="replace"))

    threads = [threading.Thread(target=client, args=(c,)) for c in chunks]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if failures:
        raise SystemExit(f"{len(failures)} messages not accepted, first: {failures[0][:300]}")
    return elapsed


def _client_process(port: int, batch: list[bytes], connections: int, results: Any) -> None:
    try:
        results.put(("ok", send_all(port, batch, connections)))
    except SystemExit as failure:
        results.put(("failed", str(failure)))


def send_from_process(port: int, batch: list[bytes], connections: int) -> float:
    """``send_all`` in a separate process (its own interpreter); returns its elapsed time."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=_client_process, args=(port, batch, connections, results))
    process.start()
    status, value = results.get()
    process.join()
    if status != "ok":
        raise SystemExit(value)
    return float(value)


def rest_bundles(batch: list[bytes]) -> list[bytes]:
    """Each message's transaction Bundle as JSON, converted as the MLLP path converts it."""
    import orjson

    from fhirhub.adapters.hl7.convert import convert_message
    from fhirhub.adapters.hl7.convert.provenance import message_key
    from fhirhub.adapters.hl7.parsing import parse

    out = []
    for raw in batch:
        message = parse(raw)
        out.append(orjson.dumps(convert_message(message, key=message_key(message)).bundle))
    return out


def _rest_client(port: int, bundles: list[bytes], results: Any) -> None:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/fhir+json", "Prefer": "return=minimal"}
    try:
        start = time.perf_counter()
        for body in bundles:
            connection.request("POST", "/fhir", body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200:
                raise SystemExit(f"REST ingest answered {response.status}: {answer[:300]!r}")
        results.put(("ok", time.perf_counter() - start))
    except BaseException as failure:  # reported by the parent
        results.put(("failed", repr(failure)))
    finally:
        connection.close()


def rest_rate(port: int, bundles: list[bytes]) -> float:
    """Bundles/s POSTed one at a time on one connection by a client process."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=_rest_client, args=(port, bundles, results))
    process.start()
    status, value = results.get()
    process.join()
    if status != "ok":
        raise SystemExit(value)
    return len(bundles) / float(value)


class RestServer:
    """The hub's HTTP API (uvicorn) on a thread of this process; no lifespan (so no
    dispatcher), as the MLLP listener here runs without one."""

    def __init__(self, hub: Any) -> None:
        import uvicorn

        from fhirhub.core.http.app import create_app

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        config = uvicorn.Config(
            create_app(hub=hub),
            host="127.0.0.1",
            port=self.port,
            lifespan="off",
            log_level="warning",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> RestServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def hl7apy_rate(batch: list[bytes]) -> float:
    from fhirhub.adapters.hl7.parsing import parse_strict

    sample = batch[: min(len(batch), 300)]
    start = time.perf_counter()
    for item in sample:
        text = item.decode()
        parse_strict(text, text.split("\r", 1)[0].split("|")[11])
    return len(sample) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument(
        "--rest-count", type=int, default=300, help="messages for the REST ingest reference"
    )
    parser.add_argument(
        "--same-process", action="store_true", help="run the client threads in the hub's process"
    )
    parser.add_argument(
        "--convert-processes",
        type=int,
        default=None,
        help="conversion worker processes (default: as the hub configures it; 0 = off)",
    )
    args = parser.parse_args()
    from fhirhub.adapters.hl7.convert_pool import configured_processes
    from fhirhub.adapters.hl7.mllp_server import MllpServer
    from fhirhub.core.hub import build_hub
    from fhirhub.core.settings import Settings

    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            db=f"sqlite:///{folder}/bench.db", data_dir=Path(folder), listeners=False, auth="off"
        )
        hub = build_hub(settings)
        processes = (
            args.convert_processes
            if args.convert_processes is not None
            else configured_processes(hub)
        )
        server = MllpServer(hub, "127.0.0.1", 0, convert_processes=processes).start()
        if server.convert_pool is not None:  # let the worker import before timing starts
            deadline = time.monotonic() + 30
            while not server.convert_pool.ready and time.monotonic() < deadline:
                time.sleep(0.05)
        rest = RestServer(hub).start()
        print(f"conversion worker processes: {processes}")
        print(
            "| Message | Count | Connections | End-to-end msg/s | hl7apy parse-only msg/s | ratio "
            "| REST ingest Bundles/s | ratio | msgs/commit | converted by workers "
            "| hub process CPU ms/msg |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        committer = server.committer
        assert committer is not None
        for name, kind in (("adt_a01.hl7", "ADT^A01"), ("oru_r01.hl7", "ORU^R01")):
            batch = messages(name, args.count)
            rest_batch = rest_bundles(
                [m.replace(b"BENCH-", b"REST-", 1) for m in messages(name, args.rest_count)]
            )
            half = len(rest_batch) // 2
            rest_before = rest_rate(rest.port, rest_batch[:half])
            parse_before = hl7apy_rate(batch)  # before and after: the machine's load drifts
            groups_before, messages_before = committer.groups, committer.messages
            pool = server.convert_pool
            prepared_before = pool.prepared if pool is not None else 0
            send = send_all if args.same_process else send_from_process
            cpu_before = time.process_time()
            elapsed = send(server.port, batch, args.connections)
            cpu = (time.process_time() - cpu_before) / len(batch) * 1000
            per_commit = (committer.messages - messages_before) / max(
                1, committer.groups - groups_before
            )
            rate = len(batch) / elapsed
            parse_rate = (parse_before + hl7apy_rate(batch)) / 2
            rest_after = rest_rate(rest.port, rest_batch[half:])
            rest_rate_mean = (rest_before + rest_after) / 2
            ahead = (pool.prepared - prepared_before) / len(batch) if pool is not None else 0.0
            print(
                f"| {kind} | {len(batch)} | {args.connections} | {rate:.0f} | "
                f"{parse_rate:.0f} | {rate / parse_rate:.2f} | {rest_rate_mean:.0f} | "
                f"{rate / rest_rate_mean:.2f} | {per_commit:.1f} | {ahead:.0%} | {cpu:.2f} |"
            )
        server.stop()
        rest.stop()
        hub.store.engine.dispose()


if __name__ == "__main__":
    main()
