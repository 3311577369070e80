"""Plan quality of the whole-serving MILP against the CPU time it is given.

For the five profile combinations of ``benchmarks/diet.py`` (300 foods x 15 nutrients, whole
servings, cost objective) solve with each CPU-time limit and record the cost of the plan found,
the proven gap, and the process CPU time used. Limits are in CPU seconds of this process (HiGHS
is interrupted from its MIP callback), so the figures do not depend on how loaded the machine
is; wall-clock time is recorded beside them.

    .venv/bin/python benchmarks/diet_quality.py
    .venv/bin/python benchmarks/diet_quality.py --limits 0.5 0.9 2 10 30

Figures go to stdout and to benchmarks/results/diet_quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from diet import COMBINATIONS, REPO, benchmark_model  # noqa: E402


def check_plan(model: Any, servings: Any) -> float:
    """The largest bound violation of the rounded plan (0 when every row holds)."""
    import numpy as np

    x = np.round(servings)
    activity = model.matrix @ x
    below = np.maximum(model.row_lower - activity, 0)
    above = np.maximum(activity - model.row_upper, 0)
    return float(max(below.max(initial=0), above.max(initial=0)))


def main() -> None:
    from fhirhub.plugins.diet import model as lp

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limits", type=float, nargs="+", default=[0.5, 0.9, 2, 10, 30])
    parser.add_argument("--out", default="diet_quality.json")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    load = os.getloadavg()[0]
    for profiles in COMBINATIONS:
        model = benchmark_model(profiles, integer=True)
        for limit in args.limits:
            cpu, wall = time.process_time(), time.perf_counter()
            solution = lp.solve(model, time_limit=limit, cpu_time=True)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            row = {
                "profiles": "+".join(profiles),
                "limit_cpu_s": limit,
                "status": solution.status,
                "cost": round(solution.objective, 4) if solution.status == "optimal" else None,
                "gap": round(solution.mip_gap, 4) if solution.mip_gap is not None else None,
                "cpu_s": round(cpu, 3),
                "wall_s": round(wall, 3),
                "violation": (
                    check_plan(model, solution.servings) if solution.status == "optimal" else None
                ),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_average": f"{load:.1f} at start, {os.getloadavg()[0]:.1f} at end",
        "rows": rows,
    }
    (REPO / "benchmarks" / "results" / args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
