"""What checking projections against the log costs a read: CPU per read, check on vs off.

Every current row a read or search serves is joined to its log row and hashed like the log
row's digest (fhir_store/projections.py). Over HTTP the difference is a few percent of a read,
well inside the scatter of a shared machine, so this measures the storage step alone, in one
process, in CPU time (``time.process_time``, which other processes' load does not inflate),
alternating the two statements block by block on the same data:

* read by id: ``store.read_current`` (join to the log row, newest-version lookup, SHA-256) vs the
  statement it replaced (``resource_current`` by primary key alone);
* search results: a page of 100 Observations with the log join and the digest check per row vs
  without.

    .venv/bin/python benchmarks/read_check.py --bundles 20 --rounds 10

Needs the Synthea Bundles of ../shared/data/synthea. Figures go to stdout and to
benchmarks/results/read-check-sqlite.json. Compare the added microseconds with an HTTP read's
cost (``benchmarks/ingest.py`` read p50) for the overhead as a share of a read.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, select, tuple_

REPO = Path(__file__).resolve().parent.parent
SYNTHEA = REPO.parent / "shared" / "data" / "synthea"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundles", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--reads", type=int, default=2000, help="reads per block")
    args = parser.parse_args()
    if not SYNTHEA.is_dir():
        print(f"Synthea data not found at {SYNTHEA}", file=sys.stderr)
        return 2

    from fhirhub.core.hub import build_hub
    from fhirhub.core.loading import load_files
    from fhirhub.core.settings import Settings
    from fhirhub.fhir_store import store as store_module
    from fhirhub.fhir_store.driver import fetch_first, positional
    from fhirhub.fhir_store.projections import checked_columns, joined_with_log, row_matches_log
    from fhirhub.fhir_store.schema import resource_current as rc

    work = Path(tempfile.mkdtemp(prefix="fhirhub-readcheck-"))
    hub = build_hub(
        Settings(db=f"sqlite:///{work / 'hub.db'}", data_dir=work, listeners=False, auth="off")
    )
    files = sorted(SYNTHEA.glob("*.json"))[: args.bundles]
    load_files(hub, files)

    plain_read = select(*store_module._CURRENT_COLUMNS).where(
        rc.c.resource_type == bindparam("resource_type"),
        rc.c.resource_id == bindparam("resource_id"),
    )
    with hub.store.read() as conn:
        keys = [
            (row[0], row[1])
            for row in conn.execute(
                select(rc.c.resource_type, rc.c.resource_id).where(
                    rc.c.resource_type.in_(["Patient", "Observation", "Encounter", "Condition"])
                )
            )
        ]
        sql, to_tuple = positional(plain_read, conn.dialect)

        def read_unchecked(resource_type: str, resource_id: str) -> Any:
            row = fetch_first(
                conn, sql, to_tuple({"resource_type": resource_type, "resource_id": resource_id})
            )
            return store_module._version_from_row(conn, row)

        def read_checked(resource_type: str, resource_id: str) -> Any:
            return store_module.read_current(conn, resource_type, resource_id)

        def page(checked: bool, after: tuple[str, str] | None) -> tuple[int, tuple[str, str]]:
            columns: list[Any] = [rc.c.resource_type, rc.c.resource_id, rc.c.content]
            query = select(*columns)
            if checked:
                query = select(*columns, *checked_columns()).select_from(joined_with_log())
            query = query.where(rc.c.resource_type == "Observation", rc.c.deleted.is_(False))
            if after is not None:
                query = query.where(tuple_(rc.c.resource_type, rc.c.resource_id) > after)
            rows = conn.execute(query.order_by(rc.c.resource_type, rc.c.resource_id).limit(100))
            served = 0
            last = after or ("", "")
            for row in rows:
                if checked and not row_matches_log(
                    row, row.resource_type, row.resource_id, row.content
                ):
                    raise AssertionError("a row does not match its log entry")
                served += 1
                last = (row.resource_type, row.resource_id)
            return served, last

        random.seed(3)
        read_us: dict[str, list[float]] = {"unchecked": [], "checked": []}
        row_us: dict[str, list[float]] = {"unchecked": [], "checked": []}
        for _ in range(args.rounds):
            sample = random.choices(keys, k=args.reads)
            for mode, read in (("unchecked", read_unchecked), ("checked", read_checked)):
                start = time.process_time()
                for resource_type, resource_id in sample:
                    read(resource_type, resource_id)
                read_us[mode].append((time.process_time() - start) / len(sample) * 1e6)
            for mode in ("unchecked", "checked"):
                start = time.process_time()
                served, after = 0, None
                while served < 2000:
                    count, after = page(mode == "checked", after)
                    if not count:
                        break
                    served += count
                row_us[mode].append((time.process_time() - start) / max(served, 1) * 1e6)
    hub.close()

    def median(values: list[float]) -> float:
        return round(statistics.median(values), 2)

    figures = {
        "backend": "sqlite",
        "bundles": args.bundles,
        "resources": len(keys),
        "rounds": args.rounds,
        "read_cpu_us_unchecked": median(read_us["unchecked"]),
        "read_cpu_us_checked": median(read_us["checked"]),
        "read_cpu_us_added": round(median(read_us["checked"]) - median(read_us["unchecked"]), 2),
        "read_cpu_us_range_unchecked": [
            round(min(read_us["unchecked"]), 1),
            round(max(read_us["unchecked"]), 1),
        ],
        "read_cpu_us_range_checked": [
            round(min(read_us["checked"]), 1),
            round(max(read_us["checked"]), 1),
        ],
        "search_row_cpu_us_unchecked": median(row_us["unchecked"]),
        "search_row_cpu_us_checked": median(row_us["checked"]),
        "search_row_cpu_us_added": round(
            median(row_us["checked"]) - median(row_us["unchecked"]), 2
        ),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d"),
    }
    out = REPO / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "read-check-sqlite.json").write_text(json.dumps(figures, indent=2) + "\n")
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
