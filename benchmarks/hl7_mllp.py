"""Sustained HL7 v2 throughput over MLLP, end to end (send, convert, commit, ACK), SQLite.

A real MLLP client (``--connections`` sockets, TCP_NODELAY, one message in flight per
connection, as MLLP senders work) sends ``--count`` distinct ADT^A01 and then ORU^R01
messages built from the synthetic fixtures (unique MSH-10 each, 500 distinct patient MRNs).
The client runs in its own process, as a sending system does (``--same-process`` runs its
threads inside the hub's process instead, where they compete for the hub's interpreter lock). Printed:
messages/s per type, and hl7apy's parse-only rate for the same messages in the same run (the
mean of one measurement just before and one just after the MLLP run), with the ratio, the mean
number of messages the listener committed per transaction (group commit), and the share of
messages whose conversion a worker process had ready (``--convert-processes``, default as the
hub configures it: one worker on a machine with more than one core), and the hub process's
own CPU time per message (all its threads; not the workers', not the client's). Run: ``.venv/bin/python benchmarks/hl7_mllp.py --count 2000``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "adapters" / "hl7" / "fixtures"


def messages(name: str, count: int) -> list[bytes]:
    template = (FIXTURES / name).read_bytes().replace(b"\n", b"\r")
    control = b"CTRL-A01-1" if b"ADT^A01" in template else b"CTRL-ORU-1"
    return [
        template.replace(control, b"BENCH-%d-%s" % (i, name.encode())).replace(
            b"MRN123", b"MRN%07d" % (i % 500)
        )
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
            db=f"sqlite:///{folder}/bench.db", data_dir=Path(folder), listeners=False
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
        print(f"conversion worker processes: {processes}")
        print(
            "| Message | Count | Connections | End-to-end msg/s | hl7apy parse-only msg/s | ratio "
            "| msgs/commit | converted by workers | hub process CPU ms/msg |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        committer = server.committer
        assert committer is not None
        for name, kind in (("adt_a01.hl7", "ADT^A01"), ("oru_r01.hl7", "ORU^R01")):
            batch = messages(name, args.count)
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
            ahead = (pool.prepared - prepared_before) / len(batch) if pool is not None else 0.0
            print(
                f"| {kind} | {len(batch)} | {args.connections} | {rate:.0f} | "
                f"{parse_rate:.0f} | {rate / parse_rate:.2f} | {per_commit:.1f} | {ahead:.0%} | {cpu:.2f} |"
            )
        server.stop()
        hub.store.engine.dispose()


if __name__ == "__main__":
    main()
