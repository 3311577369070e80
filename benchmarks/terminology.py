"""Terminology benchmark: ICD-10-CM load time, ``$expand`` typeahead, ``$lookup`` and
``Condition?code:below=...|E11`` over HTTP, beside the hub's own read in the same run.

1. Load: ``fhirhub terminology load icd10cm`` (the command users run) into a fresh SQLite
   file; wall and CPU time of the command (the package's ~98k items and their hierarchy).
2. ``--conditions`` Conditions coded with random ICD-10-CM codes (2% type 2 diabetes, E11.x)
   are written through the SDK in transactions of 2,000, as an importer would.
3. ``fhirhub serve`` answers, one request at a time over loopback HTTP:
   ``ValueSet/$expand?url=icd-10-cm?fhir_vs&filter=<term>&count=20`` (typeahead terms),
   the same with texts sent once each (``expand_fresh``: no cached expansion),
   ``CodeSystem/$lookup`` of random codes, ``Condition?code:below=icd-10-cm|E11`` and
   ``...|I00-I99`` (a chapter: first page and total) and, as the reference,
   ``GET Condition/{id}`` (the hub's plain read).

    .venv/bin/python benchmarks/terminology.py                      # 100k Conditions
    .venv/bin/python benchmarks/terminology.py --conditions 20000 --requests 200

A/B of two builds against the same data: load and seed once into ``--work DIR``, then run
each build with ``--work DIR --reuse --out FILE`` in turn (the server is started from the
``fhirhub`` the interpreter imports, e.g. ``PYTHONPATH=/path/to/other/checkout``).

Figures go to stdout and to benchmarks/results/terminology-sqlite.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
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
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
TERMS = [
    "diab",
    "diabetes",
    "fract",
    "asthma",
    "hypert",
    "pneum",
    "sepsis",
    "type 2 diab",
    "kidney",
    "migr",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    q = statistics.quantiles(ordered, n=100)
    return {
        "p50_ms": round(q[49], 2),
        "p95_ms": round(q[94], 2),
        "p99_ms": round(q[98], 2),
        "n": len(samples),
    }


def load(db_url: str, work: Path) -> dict[str, Any]:
    env = {**os.environ, "FHIRHUB_DATA_DIR": str(work), "FHIRHUB_AUTH": "off"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fhirhub.core.cli",
            "terminology",
            "load",
            "icd10cm",
            "--db",
            db_url,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "output": done.stdout.strip()[-200:]}


def seed(db_url: str, work: Path, count: int) -> list[str]:
    """Conditions through the SDK; returns their ids."""
    os.environ.update({"FHIRHUB_DATA_DIR": str(work), "FHIRHUB_AUTH": "off"})
    from sqlalchemy import select

    from fhirhub.plugins.terminology.service import service_of
    from fhirhub.plugins.terminology.tables import concept_table, property_table
    from fhirhub.sdk import command_hub, transaction

    rng = random.Random(18)
    ids: list[str] = []
    with command_hub(db=db_url) as hub:
        with service_of(hub).db.read() as conn:
            billable = list(
                conn.execute(
                    select(concept_table.c.code)
                    .join(
                        property_table,
                        (property_table.c.code == concept_table.c.code)
                        & (property_table.c.version_key == concept_table.c.version_key),
                    )
                    .where(property_table.c.property == "billable")
                ).scalars()
            )
        diabetes = [c for c in billable if c.startswith("E11")]
        for start in range(0, count, 2000):
            with transaction(hub) as tx:
                for _ in range(min(2000, count - start)):
                    code = rng.choice(diabetes) if rng.random() < 0.02 else rng.choice(billable)
                    written = tx.create(
                        {
                            "resourceType": "Condition",
                            "subject": {"display": "benchmark patient"},
                            "code": {"coding": [{"system": ICD, "code": code}]},
                        }
                    )
                    ids.append(written.version.resource_id)
        sample = rng.sample(billable, 500)
        # Deliver the new versions to the hub's consumers now, so that the server measured
        # below starts at rest instead of catching up on 100k versions while it answers.
        assert hub.dispatcher is not None
        hub.dispatcher.start()
        hub.dispatcher.wait_idle(timeout=1800)
    (work / "codes.json").write_text(json.dumps(sample))
    return ids


def serve(db_url: str, work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "FHIRHUB_DATA_DIR": str(work), "FHIRHUB_AUTH": "off"}
    server = subprocess.Popen(
        [sys.executable, "-m", "fhirhub.core.cli", "serve", "--port", str(port), "--db", db_url],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(work / "server.log", "wb"),  # noqa: SIM115
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(900):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return server, base
        except httpx.HTTPError:
            time.sleep(0.1)
    server.terminate()
    raise RuntimeError(f"fhirhub serve did not start; see {work}")


def timed(client: httpx.Client, urls: list[str]) -> tuple[list[float], list[Any]]:
    samples, bodies = [], []
    for url in urls:
        started = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{url}: {response.status_code} {response.text[:300]}")
        bodies.append(response.json())
    return samples, bodies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conditions", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse the loaded and seeded database in --work (A/B runs of two builds against "
        "the same data): skip the load and the writes",
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "terminology-sqlite.json"
    )
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="fhirhub-terminology-"))
    work.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{work / 'hub.db'}"
    results: dict[str, Any] = {"conditions": args.conditions, "requests": args.requests}

    saved = work / "ids.json"
    if args.reuse and saved.exists():
        ids = json.loads(saved.read_text())
        results["conditions"] = len(ids)
        print("reusing", len(ids), "Conditions in", work, flush=True)
    else:
        results["load"] = load(db_url, work)
        print("load", results["load"], flush=True)
        started = time.perf_counter()
        ids = seed(db_url, work, args.conditions)
        results["seed_s"] = round(time.perf_counter() - started, 1)
        saved.write_text(json.dumps(ids))
        print("seeded", len(ids), "in", results["seed_s"], "s", flush=True)
    codes = json.loads((work / "codes.json").read_text())

    server, base = serve(db_url, work)
    rng = random.Random(7)
    try:
        with httpx.Client(base_url=f"{base}/fhir", timeout=60) as client:
            warm = [f"/CodeSystem/$lookup?system={ICD}&code={codes[0]}", f"/Condition/{ids[0]}"]
            timed(client, warm * 5)
            n = args.requests
            expand = [
                f"/ValueSet/$expand?url={ICD}?fhir_vs&filter={rng.choice(TERMS)}&count=20"
                for _ in range(n)
            ]
            # Typeahead texts each sent once (a word and the first letter of the next): what
            # an expansion costs when no process has expanded that text before.
            fresh = [f"{term} {letter}" for term in TERMS for letter in "abcdefghilmnoprstuvw"]
            rng.shuffle(fresh)
            expand_fresh = [
                f"/ValueSet/$expand?url={ICD}?fhir_vs&filter={text}&count=20" for text in fresh[:n]
            ]
            lookup = [
                f"/CodeSystem/$lookup?system={ICD}&code={rng.choice(codes)}" for _ in range(n)
            ]
            below = [f"/Condition?code:below={ICD}|E11" for _ in range(max(n // 3, 30))]
            # A chapter: 1,888 codes under it, a long list if the codes are listed.
            below_chapter = [f"/Condition?code:below={ICD}|I00-I99" for _ in range(max(n // 3, 30))]
            reads = [f"/Condition/{rng.choice(ids)}" for _ in range(n)]
            # Interleaved rounds, so that a noisy neighbour hurts every figure alike.
            samples: dict[str, list[float]] = {
                "expand": [],
                "expand_fresh": [],
                "lookup": [],
                "below": [],
                "below_chapter": [],
                "read": [],
            }
            totals: list[int] = []
            chapter_totals: list[int] = []
            for part in range(5):
                for name, urls in (
                    ("expand", expand),
                    ("expand_fresh", expand_fresh),
                    ("lookup", lookup),
                    ("below", below),
                    ("below_chapter", below_chapter),
                    ("read", reads),
                ):
                    chunk = urls[part * len(urls) // 5 : (part + 1) * len(urls) // 5]
                    spent, bodies = timed(client, chunk)
                    samples[name].extend(spent)
                    if name == "below":
                        totals.extend(b.get("total", -1) for b in bodies)
                    if name == "below_chapter":
                        chapter_totals.extend(b.get("total", -1) for b in bodies)
    finally:
        server.terminate()
        server.wait(timeout=30)
    read_p50 = percentiles(samples["read"])["p50_ms"]
    for name, spent in samples.items():
        figures = percentiles(spent)
        figures["ratio_to_read_p50"] = round(figures["p50_ms"] / read_p50, 2)
        results[name] = figures
    results["below_total"] = totals[0] if totals else None
    results["below_chapter_total"] = chapter_totals[0] if chapter_totals else None
    results["reference"] = {
        "source": "tx-benchmark round 0 (healthsamurai.github.io/tx-benchmark), Apple M3, 1 VU, SNOMED CT",
        "lookup_p50_ms": {"ontoserver": 4.3, "snowstorm": 28, "termbox": 0.49},
        "text_filter_expand_p50_ms": {"ontoserver": 73, "snowstorm": 58, "termbox": 6.9},
    }
    out = args.out
    out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
