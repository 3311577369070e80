"""A third-party adapter through the SDK against the built-in HL7 adapter, on the same work.

The same ADT^A01 messages (500 distinct patients, unique control ids) are written two ways,
alternating rounds on fresh SQLite stores, in-process (no network, so only the write path is
compared):

* **hl7**: the built-in adapter's own entry point (``processing.handle_many``, one message per
  transaction: parse, convert, duplicate check, conditional transaction, dead letters);
* **sdk**: a plugin written from docs/plugins.md: the messages are parsed and converted with
  the adapter's converter, then each Bundle is written with ``acting_as(system_for(tenant))``
  + ``transaction(hub)`` + ``tx.bundle(...)`` (no duplicate check, no dead letters: the
  adapter's own extra work).

Printed per round: messages/s of each way and this process's CPU milliseconds per message
(steadier than wall time on a shared machine), and the ratios sdk / hl7 (1.0 = the same
speed; the SDK's transaction is what the adapter itself uses, so a ratio far from 1 would mean
the adapter has a private fast path again). Run: ``.venv/bin/python benchmarks/sdk_transaction.py``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "adapters" / "hl7" / "fixtures" / "adt_a01.hl7"
TENANT = "org-bench"


def messages(count: int, round_no: int) -> list[bytes]:
    template = FIXTURE.read_bytes().replace(b"\n", b"\r")
    return [
        template.replace(b"CTRL-A01-1", b"SDK-%d-%d" % (round_no, i)).replace(
            b"MRN123", b"MRN%07d" % (i % 500)
        )
        for i in range(count)
    ]


def new_hub(folder: str, name: str):  # type: ignore[no-untyped-def]
    from fhirhub.core.hub import build_hub
    from fhirhub.core.settings import Settings
    from fhirhub.sdk import SYSTEM, acting_as, transaction

    settings = Settings(
        db=f"sqlite:///{folder}/{name}.db",
        data_dir=Path(folder),
        listeners=False,
        default_tenant=TENANT,
    )
    hub = build_hub(settings)
    with acting_as(SYSTEM), transaction(hub) as tx:
        tx.update({"resourceType": "Organization", "id": TENANT, "name": "Benchmark hospital"})
    return hub


def run_hl7(folder: str, batch: list[bytes], round_no: int) -> tuple[float, float]:
    from fhirhub.adapters.hl7.processing import handle_many
    from fhirhub.sdk import acting_as, system_for

    hub = new_hub(folder, f"hl7-{round_no}")
    start, cpu = time.perf_counter(), time.process_time()
    with acting_as(system_for(TENANT)):
        for raw in batch:
            (outcome,) = handle_many(hub, [raw])
            assert outcome.code == "AA", outcome.error
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    hub.close()
    return len(batch) / elapsed, cpu / len(batch) * 1000


def run_sdk(folder: str, batch: list[bytes], round_no: int) -> tuple[float, float]:
    from fhirhub.adapters.hl7.convert import convert, message_key
    from fhirhub.adapters.hl7.parsing import parse
    from fhirhub.sdk import acting_as, system_for, transaction

    hub = new_hub(folder, f"sdk-{round_no}")
    start, cpu = time.perf_counter(), time.process_time()
    bundles = []
    for raw in batch:
        message = parse(raw)
        bundles.append(convert(message, key=message_key(message)))
    with acting_as(system_for(TENANT)):
        for bundle in bundles:
            with transaction(hub) as tx:
                tx.bundle(bundle)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    hub.close()
    return len(batch) / elapsed, cpu / len(batch) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rates: list[float] = []
    cpus: list[float] = []
    print(
        "| round | hl7 adapter msg/s | SDK plugin msg/s | ratio | hl7 CPU ms/msg "
        "| SDK CPU ms/msg | CPU ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for round_no in range(args.rounds):
            batch = messages(args.count, round_no)
            # Alternate which goes first: the machine's load drifts.
            if round_no % 2:
                sdk, sdk_cpu = run_sdk(folder, batch, round_no)
                hl7, hl7_cpu = run_hl7(folder, batch, round_no)
            else:
                hl7, hl7_cpu = run_hl7(folder, batch, round_no)
                sdk, sdk_cpu = run_sdk(folder, batch, round_no)
            rates.append(sdk / hl7)
            cpus.append(hl7_cpu / sdk_cpu)
            print(
                f"| {round_no + 1} | {hl7:.0f} | {sdk:.0f} | {sdk / hl7:.2f} | {hl7_cpu:.2f} "
                f"| {sdk_cpu:.2f} | {hl7_cpu / sdk_cpu:.2f} |"
            )
    print(
        f"median speed ratio sdk/hl7: {statistics.median(rates):.2f}; "
        f"median CPU ratio hl7/sdk: {statistics.median(cpus):.2f}"
    )


if __name__ == "__main__":
    main()
