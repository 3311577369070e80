"""CPU of the subscriptions consumer per committed version, in process (no HTTP, no threads):
what the evaluation of every version against 100 subscriptions costs, apart from delivery.

A fresh SQLite hub gets the 100 subscriptions of ``benchmarks/subscriptions.py`` and N Synthea
transaction Bundles of ../shared/data/synthea; the consumer's handler is then run over the
log in batches of 500 (as the dispatcher hands them over), then over 30 single writes one
version at a time (a quiet hub). Reported: CPU ms per version, CPU ms per single-version
batch and the events queued (which must not change between two versions of the code).

    .venv/bin/python benchmarks/subscriptions_consumer.py --limit 4
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.subscriptions import CRITERIA, SYNTHEA  # noqa: E402
from fhirhub.core.dispatcher import read_versions  # noqa: E402
from fhirhub.core.hub import build_hub  # noqa: E402
from fhirhub.core.settings import Settings  # noqa: E402
from fhirhub.plugins.subscriptions.service import service_of  # noqa: E402
from fhirhub.sdk import acting_as, process_bundle, system_for, transaction  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=4, help="number of Synthea bundles")
    args = parser.parse_args()
    if not SYNTHEA.is_dir():
        print(f"Synthea data not found at {SYNTHEA}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="fhirhub-bench-consumer-"))
    settings = Settings(
        db=f"sqlite:///{work}/hub.db",
        data_dir=work,
        listeners=False,
        plugins="-mpi",
        auth="off",
    )  # type: ignore[arg-type]
    hub = build_hub(settings)
    service = service_of(hub)
    with acting_as(system_for(None)):
        for index in range(100):
            with transaction(hub) as tx:
                tx.create(
                    {
                        "resourceType": "Subscription",
                        "status": "requested",
                        "reason": "benchmark",
                        "criteria": CRITERIA[index % len(CRITERIA)],
                        "channel": {
                            "type": "rest-hook",
                            "endpoint": f"http://127.0.0.1:9/{index}",
                            "payload": "application/fhir+json",
                        },
                    }
                )
        with hub.store.read() as conn:
            subscriptions = read_versions(conn, 0, 100_000)
        service.handle_versions(subscriptions)
        for path in sorted(SYNTHEA.glob("*.json"))[: args.limit]:
            process_bundle(hub, orjson.loads(path.read_bytes()))
        with hub.store.read() as conn:
            versions = read_versions(conn, subscriptions[-1].seq, 100_000)
    service.handle_versions(versions[:1])  # owners cached, as on a running hub
    versions = versions[1:]
    start = time.process_time()
    for offset in range(0, len(versions), 500):
        service.handle_versions(versions[offset : offset + 500])
    per_version = (time.process_time() - start) / len(versions) * 1000
    with acting_as(system_for(None)):
        for value in range(30):
            with transaction(hub) as tx:
                tx.create(
                    {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
                        "valueQuantity": {"value": 150 + value, "unit": "mg/dL"},
                    }
                )
    with hub.store.read() as conn:
        singles = read_versions(conn, versions[-1].seq, 1000)
    start = time.process_time()
    for version in singles:
        service.handle_versions([version])
    per_single = (time.process_time() - start) / len(singles) * 1000
    service.wait_stored()  # the writer thread stores the last batches
    with hub.store.read() as conn:
        events = conn.exec_driver_sql("SELECT count(*) FROM subscriptions_event").scalar()
    print(
        f"versions={len(versions)} events={events} "
        f"consumer_cpu_ms_per_version={per_version:.3f} "
        f"single_version_batch_cpu_ms={per_single:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
