"""The optimisation itself, checked without trusting the solver's word: an LP optimum carries
a duality certificate verified here with numpy, and a small MILP is compared with brute force
over every combination of whole servings."""

from __future__ import annotations

import itertools
from dataclasses import replace

import highspy
import numpy as np
import pytest

from fhirhub.plugins.diet import model as lp
from fhirhub.plugins.diet.foods import default_table
from fhirhub.plugins.diet.person import Person, energy_requirement
from fhirhub.plugins.diet.profiles import Side, Targets, combine
from fhirhub.plugins.diet.request import plan_spec
from tests.plugins.diet.helpers import sr28_per_100g

MEALS = [
    lp.Meal(m["id"], m["code"], m["title"], m["energy_min"], m["energy_max"])
    for m in plan_spec()["meals"]
]


def full_model(profiles: list[str]) -> lp.Model:
    table = default_table()
    person = Person(age=52, sex="female", weight_kg=71, height_cm=164)
    kcal, text = energy_requirement(person, plan_spec()["energy"]["activity_factors"], 2000)
    per_serving = table.per_100g * np.array([f.serving_g for f in table.foods])[:, None] / 100
    return lp.build(
        list(table.foods),
        per_serving,
        combine(profiles, person, kcal, text),
        MEALS,
        max_per_food=3,
        max_per_group=plan_spec()["max_servings_per_group"],
        energy_tolerance=0.05,
        objective="cost",
        preferred={},
        integer=False,
    )


@pytest.mark.parametrize("profiles", [["general"], ["dash"], ["dash-1500", "diabetes"], ["ckd"]])
def test_lp_optimum_has_a_valid_duality_certificate(profiles: list[str]) -> None:
    """x is optimal iff it is feasible and some y is dual feasible with equal objective: for
    min c'x, L <= Ax <= U, x >= 0, the dual is max sum(y_i L_i, y_i > 0) + sum(y_i U_i, y_i < 0)
    with c - A'y >= 0, y_i >= 0 on rows without an upper bound, <= 0 without a lower bound."""
    model = full_model(profiles)
    highs = lp.to_highs(model, integer=False)
    highs.run()
    assert highs.getModelStatus() == highspy.HighsModelStatus.kOptimal
    x = np.array(highs.getSolution().col_value)
    y = np.array(highs.getSolution().row_dual)
    A, c = model.matrix, model.cost
    activity = A @ x
    scale = np.maximum(1.0, np.abs(np.where(np.isinf(model.row_lower), 0, model.row_lower)))
    assert np.all(x >= -1e-9)
    assert np.all(activity >= model.row_lower - 1e-6 * scale)
    assert np.all(
        activity
        <= model.row_upper
        + 1e-6 * np.maximum(1.0, np.abs(np.where(np.isinf(model.row_upper), 0, model.row_upper)))
    )
    assert np.all(y[np.isinf(model.row_upper)] >= -1e-9)
    assert np.all(y[np.isinf(model.row_lower)] <= 1e-9)
    reduced = c - A.T @ y
    assert reduced.min() >= -1e-7
    dual = np.where(y > 0, y * np.where(np.isinf(model.row_lower), 0, model.row_lower), 0).sum()
    dual += np.where(y < 0, y * np.where(np.isinf(model.row_upper), 0, model.row_upper), 0).sum()
    assert c @ x == pytest.approx(dual, rel=1e-6, abs=1e-9)


def test_small_milp_matches_brute_force() -> None:
    """Six foods, whole servings 0-3 at one meal: 4^6 combinations, all tried."""
    table = default_table()
    ids = ["09040", "01085", "16015", "20045", "12061", "11124"]  # banana, skim milk,
    position = {f.id: i for i, f in enumerate(table.foods)}  # black beans, rice, almonds, carrots
    foods = [table.foods[position[i]] for i in ids]
    one_meal = [lp.Meal("day", "B", "Day", 0, 200)]
    foods = [f.__class__(**{**f.__dict__, "meals": "B"}) for f in foods]
    raw = sr28_per_100g()
    order = list(raw[ids[0]])
    per_serving = np.array(
        [[raw[i][n] * f.serving_g / 100 for n in order] for i, f in zip(ids, foods, strict=True)]
    )
    sides = {
        "protein": [Side("protein", "min", 40.0, "test", "test", "")],
        "fibre": [Side("fibre", "min", 18.0, "test", "test", "")],
        "sodium": [Side("sodium", "max", 400.0, "test", "test", "")],
    }
    targets = Targets(1100.0, "test", sides)
    model = lp.build(
        foods,
        per_serving,
        targets,
        one_meal,
        max_per_food=3,
        max_per_group={},
        energy_tolerance=0.15,
        objective="cost",
        preferred={},
        integer=True,
    )
    solution = lp.solve(model, time_limit=30, gap=0.0)
    assert solution.status == "optimal"
    price = np.array([f.price_per_100g * f.serving_g / 100 for f in foods])
    index = {n: j for j, n in enumerate(order)}
    best = None
    for servings in itertools.product(range(4), repeat=len(foods)):
        s = np.array(servings, dtype=float)
        totals = s @ per_serving
        if not 1100 * 0.85 <= totals[index["energy"]] <= 1100 * 1.15:
            continue
        if (
            totals[index["protein"]] < 40
            or totals[index["fibre"]] < 18
            or totals[index["sodium"]] > 400
        ):
            continue
        cost = float(s @ price)
        best = cost if best is None else min(best, cost)
    assert best is not None
    assert solution.objective == pytest.approx(best, rel=1e-9, abs=1e-9)
    assert np.allclose(solution.servings, np.round(solution.servings), atol=1e-6)


def whole_serving_model(profiles: list[str]) -> lp.Model:
    model = full_model(profiles)
    return replace(model, integer=np.ones(model.matrix.shape[1], dtype=bool))


def test_tightened_bounds_keep_every_plan_and_cut_the_rest() -> None:
    """The caps come from rows that can only add up: the LP optimum fits under the continuous
    caps, a whole-serving plan under the rounded ones, and no cap exceeds the servings limit
    per food."""
    model = whole_serving_model(["dash"])
    tight = lp.tightened(model)
    assert np.all(np.isinf(model.col_upper))
    assert np.all(tight.col_upper <= 3)  # maxServingsPerFood
    assert np.all(tight.col_upper == np.floor(tight.col_upper))
    continuous = full_model(["dash"])
    relaxed = lp.run(lp.to_highs(continuous, integer=False))
    assert np.all(relaxed.servings <= lp.tightened(continuous).col_upper * (1 + 1e-7))
    plan = lp.solve(model, time_limit=5, cpu_time=True)
    assert plan.status == "optimal"
    assert np.all(np.round(plan.servings) <= tight.col_upper)


@pytest.mark.parametrize("profiles", [["ckd"], ["diabetes", "dash"]])
def test_whole_serving_plan_meets_every_bound(profiles: list[str]) -> None:
    """CKD's narrow protein window once left the MILP without any plan; now a plan of whole
    servings is found within a few CPU seconds and every row, recomputed here, holds."""
    model = whole_serving_model(profiles)
    plan = lp.solve(model, time_limit=3, cpu_time=True)
    assert plan.status == "optimal"
    servings = np.round(plan.servings)
    assert np.allclose(plan.servings, servings, atol=1e-6)
    activity = model.matrix @ servings
    assert np.all(activity >= model.row_lower - 1e-6 * np.maximum(1, np.abs(model.row_lower)))
    assert np.all(activity <= model.row_upper + 1e-6 * np.maximum(1, np.abs(model.row_upper)))
    assert plan.mip_gap is not None and 0 <= plan.mip_gap < 1
    relaxed = lp.run(lp.to_highs(model, integer=False))
    assert plan.objective >= relaxed.objective - 1e-9
