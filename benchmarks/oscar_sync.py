"""OSCAR sync benchmark: a full sync of 1,000 patients (~50 rows each) from a real MariaDB
with OSCAR's schema into fhirhub on SQLite, then an incremental sync with nothing changed;
in the same run, the hub's REST ingest rate measured the way benchmarks/ingest.py does
(transaction Bundles POSTed over HTTP to ``fhirhub serve``), so the two are comparable.

    .venv/bin/python benchmarks/oscar_sync.py [--patients 1000] [--runs 2]

The MariaDB is a throw-away server started for the run (tests/adapters/oscar/mariadb_server.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fhirhub.adapters.oscar.sample_clinic import generate  # noqa: E402
from fhirhub.adapters.oscar.settings import OscarSettings  # noqa: E402
from fhirhub.adapters.oscar.sources.database import DatabaseSource  # noqa: E402
from fhirhub.adapters.oscar.sync import OscarSync  # noqa: E402
from tests.adapters.oscar.clinic_db import insert_rows  # noqa: E402
from tests.adapters.oscar.mariadb_server import mariadb_server, oscar_database  # noqa: E402


def hub_at(folder: str):  # type: ignore[no-untyped-def]
    from fhirhub.core.hub import build_hub
    from fhirhub.core.settings import Settings

    return build_hub(
        Settings(
            db=f"sqlite:///{folder}/hub.db",
            data_dir=folder,
            listeners=False,
            auth="off",
        )
    )


def oscar_run(url: str) -> dict[str, float]:
    folder = tempfile.mkdtemp(prefix="oscar-bench-")
    hub = hub_at(folder)
    try:
        settings = OscarSettings(database=url, instance="bench")
        source = DatabaseSource(url)
        full = OscarSync(hub, settings, source).run()
        assert full.ok, full
        incremental = OscarSync(hub, settings, source).run()
        source.close()
        return {
            "records": full.records,
            "resources": full.resources,
            "full_s": full.seconds,
            "resources_per_s": full.resources / full.seconds,
            "incremental_s": incremental.seconds,
        }
    finally:
        hub.close()


def rest_ingest_run() -> float | None:
    """resources/s of benchmarks/ingest.py's HTTP load (Synthea Bundles), or None without
    the Synthea reference data."""
    import subprocess

    synthea = REPO.parent / "shared" / "data" / "synthea"
    if not synthea.exists():
        return None
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "ingest.py")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    result = REPO / "benchmarks" / "results" / "ingest-sqlite.json"
    if out.returncode != 0 or not result.exists():
        print(out.stdout[-2000:], out.stderr[-2000:])
        return None
    data = json.loads(result.read_text())
    value = data.get("ingest_resources_per_s") or data.get("ingest", {}).get("resources_per_s")
    return float(value) if value else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--no-ingest", action="store_true", help="skip the REST ingest reference")
    args = parser.parse_args()
    rows = generate(args.patients, seed=1, per_patient=40)
    results = []
    ingest = []
    with mariadb_server() as (host, port), oscar_database(host, port) as url:
        insert_rows(url, rows)
        print(
            f"OSCAR database: {sum(len(v) for v in rows.values())} rows, {args.patients} patients"
        )
        for run in range(args.runs):
            results.append(oscar_run(url))
            print(
                f"run {run + 1}: full {results[-1]['resources']:.0f} resources in {results[-1]['full_s']:.1f} s = "
                f"{results[-1]['resources_per_s']:.0f}/s; incremental (nothing changed) {results[-1]['incremental_s']:.3f} s"
            )
            if not args.no_ingest:
                rate = rest_ingest_run()
                if rate:
                    ingest.append(rate)
                    print(
                        f"run {run + 1}: REST ingest (benchmarks/ingest.py) {rate:.0f} resources/s"
                    )
    rates = [r["resources_per_s"] for r in results]
    summary = {
        "patients": args.patients,
        "oscar_full_resources_per_s": [round(r) for r in rates],
        "oscar_incremental_s": [round(r["incremental_s"], 3) for r in results],
        "rest_ingest_resources_per_s": [round(r) for r in ingest],
    }
    if ingest:
        summary["ratio_oscar_to_rest"] = [
            round(a / b, 2) for a, b in zip(rates, ingest, strict=False)
        ]
    print(json.dumps(summary, indent=2))
    out = REPO / "benchmarks" / "results" / "oscar-sync-sqlite.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
