"""Sustained HL7 v2 throughput over MLLP, end to end (send, convert, commit, ACK), SQLite.

A real MLLP client (``--connections`` sockets, TCP_NODELAY, one message in flight per
connection, as MLLP senders work) sends ``--count`` distinct ADT^A01 and then ORU^R01
messages built from the synthetic fixtures (unique MSH-10 and patient MRN each). Printed:
messages/s per type, and hl7apy's parse-only rate for the same messages in the same run, with
the ratio. Run: ``.venv/bin/python benchmarks/hl7_mllp.py --count 2000``.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path

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
    args = parser.parse_args()
    from fhirhub.adapters.hl7.mllp_server import MllpServer
    from fhirhub.core.hub import build_hub
    from fhirhub.core.settings import Settings

    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            db=f"sqlite:///{folder}/bench.db", data_dir=Path(folder), hl7_port="off"
        )
        hub = build_hub(settings)
        server = MllpServer(hub, "127.0.0.1", 0).start()
        print(
            "| Message | Count | Connections | End-to-end msg/s | hl7apy parse-only msg/s | ratio |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for name, kind in (("adt_a01.hl7", "ADT^A01"), ("oru_r01.hl7", "ORU^R01")):
            batch = messages(name, args.count)
            elapsed = send_all(server.port, batch, args.connections)
            rate = len(batch) / elapsed
            parse_rate = hl7apy_rate(batch)
            print(
                f"| {kind} | {len(batch)} | {args.connections} | {rate:.0f} | "
                f"{parse_rate:.0f} | {rate / parse_rate:.2f} |"
            )
        server.stop()
        hub.store.engine.dispose()


if __name__ == "__main__":
    main()
