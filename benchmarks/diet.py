"""How fast the diet optimiser answers: the solve alone (LP and MILP) and the whole operation
over HTTP.

1. **Solve**: 300 foods (the 292 of the curated list and 8 more from the full SR28 table) x 15
   nutrients, for five profile combinations (general; dash; dash-1500; diabetes + dash; ckd),
   four meals, a 52-year-old woman of 71 kg and 164 cm. Times model building and the HiGHS
   solve separately (wall clock, and the process's CPU time, which shows what a loaded
   machine leaves the solver), ``--repeat`` times per combination: LP, MILP in whole servings
   and MILP in half servings alternating so that all meet the same machine load.
2. **HTTP**: ``fhirhub serve`` in its own process on SQLite (authentication off), the demo
   patients loaded; one client POSTs ``Patient/{id}/$diet-optimise`` for a patient with
   hypertension and diabetes, one request at a time, ``--requests`` times: with the default
   ``store=true`` (the draft NutritionOrder and its Provenance are written in one transaction)
   and with ``store=false``, alternating.

    .venv/bin/python benchmarks/diet.py
    .venv/bin/python benchmarks/diet.py --repeat 50 --requests 200

Figures go to stdout and to benchmarks/results/diet.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
COMBINATIONS = [["general"], ["dash"], ["dash-1500"], ["diabetes", "dash"], ["ckd"]]
EXTRA_FOODS = ["09060", "11098", "01026", "12120", "09164", "11294", "09174", "11209"]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 2),
        "p95": round(percentile(values, 95), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


@functools.cache
def benchmark_foods() -> tuple[list[Any], np.ndarray]:
    """The 300 foods (curated list + :data:`EXTRA_FOODS`) and their nutrients per serving."""
    from fhirhub.plugins.diet.foods import default_table, full_table_food

    table = default_table()
    foods = list(table.foods)
    vectors = [table.per_100g[i] for i in range(len(foods))]
    for ndb in EXTRA_FOODS:
        found = full_table_food(ndb)
        assert found is not None, ndb
        foods.append(found[0])
        vectors.append(found[1])
    per_serving = np.vstack(vectors) * np.array([f.serving_g for f in foods])[:, None] / 100
    return foods, per_serving


def benchmark_model(profiles: list[str], integer: bool, step: float = 1.0) -> Any:
    """The model the benchmark solves for one profile combination (cost objective)."""
    from fhirhub.plugins.diet import model as lp
    from fhirhub.plugins.diet.person import Person, energy_requirement
    from fhirhub.plugins.diet.profiles import combine
    from fhirhub.plugins.diet.request import plan_spec

    foods, per_serving = benchmark_foods()
    spec = plan_spec()
    meals = [
        lp.Meal(m["id"], m["code"], m["title"], m["energy_min"], m["energy_max"])
        for m in spec["meals"]
    ]
    person = Person(age=52, sex="female", weight_kg=71, height_cm=164)
    kcal, text = energy_requirement(person, spec["energy"]["activity_factors"], 2000)
    targets = combine(profiles, person, kcal, text)
    return lp.build(
        [replace(food, serving_g=food.serving_g * step) for food in foods],
        per_serving * step,
        targets,
        meals,
        max_per_food=float(spec["max_servings_per_food"]) / step,
        max_per_group={k: float(v) / step for k, v in spec["max_servings_per_group"].items()},
        energy_tolerance=spec["energy"]["tolerance_percent"] / 100,
        objective="cost",
        preferred={},
        integer=integer,
    )


def solve_benchmark(repeat: int, milp_limit: float) -> dict[str, Any]:
    from fhirhub.plugins.diet import model as lp

    foods, per_serving = benchmark_foods()
    results: dict[str, Any] = {"foods": len(foods), "nutrients": per_serving.shape[1]}
    timings: dict[str, dict[str, list[float]]] = {}
    outcomes: dict[str, list[str]] = {}
    gaps: dict[str, list[float]] = {}
    for _round in range(repeat):
        for profiles in COMBINATIONS:
            for kind, step in (("LP", 1.0), ("MILP", 1.0), ("MILP-half", 0.5)):
                integer = kind != "LP"
                key = f"{'+'.join(profiles)} {kind}"
                started = time.perf_counter()
                model = benchmark_model(profiles, integer, step)
                built = time.perf_counter()
                cpu = time.process_time()
                solution = lp.solve(model, time_limit=milp_limit)
                cpu = time.process_time() - cpu
                done = time.perf_counter()
                entry = timings.setdefault(
                    key, {"build_ms": [], "solve_ms": [], "solve_cpu_ms": [], "total_ms": []}
                )
                entry["build_ms"].append((built - started) * 1000)
                entry["solve_ms"].append((done - built) * 1000)
                entry["solve_cpu_ms"].append(cpu * 1000)
                entry["total_ms"].append((done - started) * 1000)
                outcomes.setdefault(key, []).append(solution.status)
                if solution.mip_gap is not None:
                    gaps.setdefault(key, []).append(solution.mip_gap)
    for key, entry in timings.items():
        results[key] = {name: summary(values) for name, values in entry.items()} | {
            "outcomes": {s: outcomes[key].count(s) for s in sorted(set(outcomes[key]))},
            **({"mip_gap": summary(gaps[key])} if key in gaps else {}),
        }
    for kind in ("LP", "MILP", "MILP-half"):
        for measure in ("solve_ms", "solve_cpu_ms"):
            pooled = [v for k, e in timings.items() if k.endswith(f" {kind}") for v in e[measure]]
            results[f"all {kind} {measure}"] = summary(pooled)
    return results


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux ``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_benchmark(requests: int) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="diet-bench-"))
    port = free_port()
    env = {**os.environ, "FHIRHUB_DATA_DIR": str(data_dir), "FHIRHUB_AUTH": "off"}
    db = f"sqlite:///{data_dir / 'hub.db'}"
    command = [sys.executable, "-m", "fhirhub.core.cli", "serve", "--demo", "--port", str(port)]
    command += ["--db", db]
    log = open(data_dir / "server.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError((data_dir / "server.log").read_text())
            time.sleep(0.2)
        with httpx.Client(base_url=f"{base}/fhir", timeout=60) as client:
            bundle = client.get("Patient", params={"family": "Mensah-Boaten"}).json()
            patient = bundle["entry"][0]["resource"]["id"]
            url = f"Patient/{patient}/$diet-optimise"
            bodies = {
                "store": {"resourceType": "Parameters", "parameter": []},
                "preview": {
                    "resourceType": "Parameters",
                    "parameter": [{"name": "store", "valueBoolean": False}],
                },
            }
            for body in bodies.values():  # warm up: loads the food table, first HiGHS
                assert client.post(url, json=body).status_code == 200
            timings: dict[str, list[float]] = {name: [] for name in bodies}
            server_cpu: dict[str, float] = dict.fromkeys(bodies, 0.0)
            for _ in range(requests):
                for name, body in bodies.items():
                    cpu = process_cpu_seconds(server.pid)
                    started = time.perf_counter()
                    response = client.post(url, json=body)
                    timings[name].append((time.perf_counter() - started) * 1000)
                    server_cpu[name] += process_cpu_seconds(server.pid) - cpu
                    assert response.status_code == 200, response.text
            stored = client.get("NutritionOrder", params={"patient": patient, "_summary": "count"})
        return {
            "patient": "Kwame Mensah-Boaten (hypertension, type 2 diabetes: dash + diabetes)",
            "store=true ms": summary(timings["store"]),
            "store=false ms": summary(timings["preview"]),
            "server CPU ms per request, store=true": round(
                1000 * server_cpu["store"] / requests, 1
            ),
            "server CPU ms per request, store=false": round(
                1000 * server_cpu["preview"] / requests, 1
            ),
            "orders stored": stored.json().get("total"),
        }
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--milp-time-limit", type=float, default=0.8)
    args = parser.parse_args()
    load = os.getloadavg()
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{os.cpu_count()} cores, load average {load[0]:.1f} at start",
        "solve": solve_benchmark(args.repeat, args.milp_time_limit),
        "http": http_benchmark(args.requests),
    }
    results["machine"] += f", {os.getloadavg()[0]:.1f} at end"
    text = json.dumps(results, indent=2)
    print(text)
    out = REPO / "benchmarks" / "results" / "diet.json"
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
