"""Why a diet is infeasible, and what would make it feasible.

Two questions, two computations on the LP relaxation (whole servings only make it harder):

* **Which constraints conflict** — an irreducible infeasible subset (IIS) by the deletion
  filter (Chinneck and Dravnieks, ORSA J. Computing 3(2), 1991): drop one constraint; if the
  rest is still infeasible it was not needed for the conflict, leave it out; otherwise put it
  back. What remains conflicts, and removing any one of them resolves that conflict. Plan rules
  (meal shares, group and per-food limits) are tried first, so the subset names nutrient
  bounds where it can. The ~300 per-food limits count as one rule. A problem can hold several
  independent conflicts (DASH and CKD disagree on protein, potassium and calcium): once one is
  found its constraints are set aside and the search repeats, up to :data:`MAX_CONFLICTS`.
* **Which relaxation would make it feasible** — an elastic programme: every relaxable bound gets
  a slack variable, weighted by 1/|bound| so that slacks are relative, and HiGHS minimises their
  sum. The slacks that are not zero say by how much to move which bound: the smallest total
  relative change that makes the plan feasible.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import highspy
import numpy as np

from .model import INF, Constraint, Model, to_highs

#: Tried first in the deletion filter: rules of the plan rather than of a guideline.
PLAN_FIRST = ("food-max", "group:", "meal:", "meal-share:", "energy:")
MAX_CONFLICTS = 6


@dataclass(frozen=True)
class Relaxation:
    constraint: Constraint
    suggested: float  # the bound that would do


@dataclass(frozen=True)
class Explanation:
    conflicts: list[list[Constraint]]  # disjoint irreducible infeasible subsets
    relaxations: list[Relaxation]


def _group_key(constraint: Constraint) -> str:
    return "food-max" if constraint.id.startswith("food-max:") else constraint.id


def _order(key: str) -> tuple[int, str]:
    for position, prefix in enumerate(PLAN_FIRST):
        if key.startswith(prefix):
            return position, key
    return len(PLAN_FIRST), key


def explain(model: Model) -> Explanation:
    lp = replace(model, integer=np.zeros_like(model.integer))
    return Explanation(conflicting(lp), relax(lp))


def conflicting(model: Model) -> list[list[Constraint]]:
    """Disjoint irreducible infeasible subsets of the relaxable constraints (see the module
    docstring); empty when the model is feasible."""
    groups: dict[str, list[int]] = {}
    for row, constraint in enumerate(model.constraints):
        if constraint.relaxable:
            groups.setdefault(_group_key(constraint), []).append(row)
    highs = to_highs(model, integer=False)
    highs.setOptionValue("presolve", "off")  # bound changes between solves: warm starts

    def feasible() -> bool:
        highs.run()
        return bool(highs.getModelStatus() == highspy.HighsModelStatus.kOptimal)

    def set_rows(rows: list[int], active: bool) -> None:
        for row in rows:
            low = model.row_lower[row] if active else -INF
            high = model.row_upper[row] if active else INF
            highs.changeRowBounds(
                row,
                -highspy.kHighsInf if np.isinf(low) else float(low),
                highspy.kHighsInf if np.isinf(high) else float(high),
            )

    conflicts: list[list[Constraint]] = []
    set_aside: set[str] = set()
    while len(conflicts) < MAX_CONFLICTS and not feasible():
        kept: list[str] = []
        candidates = [key for key in sorted(groups, key=_order) if key not in set_aside]
        for key in candidates:
            set_rows(groups[key], active=False)
            if feasible():
                set_rows(groups[key], active=True)
                kept.append(key)
        if not kept:  # infeasible without any relaxable constraint: nothing to name
            break
        conflicts.append([model.constraints[groups[key][0]] for key in kept])
        for key in candidates:  # back to the full problem, less this conflict
            set_rows(groups[key], active=key not in kept)
        set_aside.update(kept)
    return conflicts


def relax(model: Model) -> list[Relaxation]:
    """The smallest relative relaxation of the bounds that makes the model feasible."""
    rows = [r for r, c in enumerate(model.constraints) if c.relaxable]
    slack = np.zeros((model.matrix.shape[0], len(rows)))
    weights = np.zeros(len(rows))
    for k, row in enumerate(rows):
        constraint = model.constraints[row]
        slack[row, k] = 1.0 if constraint.kind == "min" else -1.0
        weights[k] = 1.0 / max(abs(constraint.bound), 1.0)
    elastic = replace(
        model,
        matrix=np.hstack([model.matrix, slack]),
        cost=np.concatenate([model.cost * 1e-6, weights]),
        col_upper=np.concatenate([model.col_upper, np.full(len(rows), INF)]),
        integer=np.zeros(model.matrix.shape[1] + len(rows), dtype=bool),
    )
    highs = to_highs(elastic, integer=False)
    highs.run()
    if highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return []
    values = np.array(highs.getSolution().col_value)[model.matrix.shape[1] :]
    found: dict[str, Relaxation] = {}
    for k, row in enumerate(rows):
        constraint = model.constraints[row]
        if values[k] <= 1e-6 * max(abs(constraint.bound), 1.0):
            continue
        change = values[k] if constraint.kind == "min" else -values[k]
        suggested = constraint.bound - change
        key = _group_key(constraint)
        current = found.get(key)
        if current is None or abs(suggested - constraint.bound) > abs(
            current.suggested - current.constraint.bound
        ):
            found[key] = Relaxation(constraint, suggested)
    return sorted(found.values(), key=lambda r: _order(_group_key(r.constraint)), reverse=True)
