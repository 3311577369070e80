"""CPU of the HL7 writer's work per message, in-process: ``handle()`` of one message at a time
(what a single MLLP feed costs the writer thread: parse, convert, write, commit, ACK), without
the socket and the thread hand-offs. SQLite in a temp dir, default plugins, the messages of
``hl7_mllp.py`` (each ADT^A01 a new visit, each ORU^R01 a new order), 200 warm-up messages,
start-up's garbage collected before timing. Run from a checkout to measure that checkout:
``.venv/bin/python benchmarks/hl7_writer_cpu.py adt 1000`` (or ``oru``)."""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this checkout's code, not the editable install's
sys.path.insert(0, str(REPO / "benchmarks"))

from hl7_mllp import messages  # noqa: E402

from fhirhub.adapters.hl7.processing import handle  # noqa: E402
from fhirhub.core.hub import build_hub  # noqa: E402
from fhirhub.core.settings import Settings  # noqa: E402

WARM_UP = 200


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else "adt"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    fixture = {"adt": "adt_a01.hl7", "oru": "oru_r01.hl7"}[kind]
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            db=f"sqlite:///{folder}/bench.db", data_dir=Path(folder), listeners=False, auth="off"
        )
        hub = build_hub(settings)
        batch = messages(fixture, count + WARM_UP)
        for raw in batch[:WARM_UP]:
            outcome = handle(hub, raw)
            assert outcome.code == "AA", outcome.ack
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        for raw in batch[WARM_UP:]:
            outcome = handle(hub, raw)
            assert outcome.code == "AA", outcome.ack
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        hub.close()
    print(f"{kind}: CPU {1000 * cpu / count:.3f} ms/message, wall {1000 * wall / count:.3f} ms")


if __name__ == "__main__":
    main()
