"""The diet as a linear programme, solved with HiGHS (https://highs.dev, via ``highspy``).

Variables: servings of each allowed food at each meal it may be planned for (``s[f, m] >= 0``;
whole numbers in the MILP form). Every constraint is one-sided, so that each can be named,
relaxed or dropped on its own when the problem is infeasible (:mod:`.explain`):

* each nutrient bound of the targets: ``sum c[f, n] s[f, m] >= min`` or ``<= max``, where
  ``c[f, n]`` is the nutrient in one serving (SR28 value per 100 g x serving grams / 100);
* energy within the plan's tolerance of the requirement;
* each meal's energy within its share of the requirement (``plan.json``);
* meal shares of a nutrient (the diabetes profile's carbohydrate distribution):
  ``sum over meal - p x sum over day >= 0``;
* at most ``maxServingsPerFood`` servings of each food a day, and at most the group limit of
  each food group (``plan.json``);
* for the preference objective, one equality per preferred food tying its servings to the
  preferred amount through two deviation variables.

Objective ``cost``: the sample price of the servings. Objective ``preference``: the servings of
foods not preferred plus the deviation from each preferred amount, with the cost at a weight of
1/100 to choose between otherwise equal plans.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import highspy
import numpy as np

from .foods import Food
from .nutrients import INDEX, NUTRIENTS
from .profiles import Targets

INF = math.inf
MEAL_CODES = "BLDS"
#: Deviation from a preferred amount weighs as much as a serving of a food not preferred.
PREFERENCE_COST_WEIGHT = 0.01
#: MILP: stop within this relative gap of the proven optimum (5%: a few cents on a day's food),
#: or at the time limit (the plugin setting ``milp_time_limit_s``), whichever comes first; the
#: answer reports the gap reached (``mipGap``).
MIP_RELATIVE_GAP = 0.05
MIP_TIME_LIMIT_S = 0.8
#: Foods the first MILP stage may use: the LP's own and those its reduced costs rank next.
MIP_CANDIDATE_FOODS = 40
#: The share of the time limit the first MILP stage (candidate foods only) may take.
MIP_FIRST_STAGE_SHARE = 0.4


@dataclass(frozen=True)
class Meal:
    id: str
    code: str
    title: str
    energy_min: float  # percent of the energy requirement
    energy_max: float


@dataclass(frozen=True)
class Constraint:
    """One row: ``activity >= bound`` (kind "min") or ``<= bound`` (kind "max")."""

    id: str  # e.g. "nutrient:potassium:min", "food-max", "group:fruit"
    kind: str
    bound: float
    label: str  # for a person: "Potassium ≥ 4,700 mg (dash)"
    nutrient: str | None = None
    unit: str = ""
    profile: str = ""
    source: str = ""
    relaxable: bool = True


@dataclass
class Model:
    """The arrays HiGHS needs and what each row and column means."""

    foods: list[Food]
    columns: list[tuple[int, int]]  # (position in foods, meal position)
    meals: list[Meal]
    matrix: np.ndarray  # rows x columns (dense; ~350 x ~800 for the default list)
    row_lower: np.ndarray
    row_upper: np.ndarray
    cost: np.ndarray
    col_upper: np.ndarray
    integer: np.ndarray  # bool per column
    constraints: list[Constraint]  # one per row
    nutrient_rows: np.ndarray  # nutrients x columns: amount per serving at that column
    deviation_columns: int = 0  # trailing columns that are preference deviations


@dataclass
class Solution:
    status: str  # "optimal" or "infeasible" (or "time-limit" without a feasible point)
    servings: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per column
    objective: float = 0.0
    solve_ms: float = 0.0
    mip_gap: float | None = None


def build(
    foods: list[Food],
    per_serving: np.ndarray,
    targets: Targets,
    meals: list[Meal],
    *,
    max_per_food: float,
    max_per_group: dict[str, float],
    energy_tolerance: float,
    objective: str,
    preferred: dict[str, float | None],
    integer: bool,
) -> Model:
    """The model for ``foods`` (``per_serving[i, j]``: nutrient j in one serving of food i).

    ``preferred`` maps a food id or a food group to a preferred number of servings a day
    (None: no amount, the food or group is simply not penalised)."""
    meal_position = {meal.code: position for position, meal in enumerate(meals)}
    columns = [
        (f, meal_position[code])
        for f, food in enumerate(foods)
        for code in food.meals
        if code in meal_position
    ]
    food_of = np.array([f for f, _m in columns], dtype=int)
    meal_of = np.array([m for _f, m in columns], dtype=int)
    nutrient_rows = per_serving[food_of].T  # nutrients x columns
    energy = nutrient_rows[INDEX["energy"]]
    rows: list[np.ndarray] = []
    lower: list[float] = []
    upper: list[float] = []
    constraints: list[Constraint] = []

    def add(row: np.ndarray, constraint: Constraint) -> None:
        rows.append(row)
        lower.append(constraint.bound if constraint.kind == "min" else -INF)
        upper.append(constraint.bound if constraint.kind == "max" else INF)
        constraints.append(constraint)

    kcal = NUTRIENTS[INDEX["energy"]]
    requirement = targets.energy_kcal
    for kind, factor in (("min", 1 - energy_tolerance), ("max", 1 + energy_tolerance)):
        value = requirement * factor
        sign = "≥" if kind == "min" else "≤"
        add(
            energy,
            Constraint(
                f"energy:{kind}",
                kind,
                value,
                f"Energy {sign} {kcal.format(value)} (requirement {requirement:,.0f} kcal "
                f"{'-' if kind == 'min' else '+'} {energy_tolerance:.0%})",
                "energy",
                "kcal",
                "plan",
            ),
        )
    for nutrient, sides in targets.sides.items():
        for side in sides:
            add(
                nutrient_rows[INDEX[nutrient]],
                Constraint(
                    f"nutrient:{nutrient}:{side.kind}",
                    side.kind,
                    side.value,
                    side.label(),
                    nutrient,
                    NUTRIENTS[INDEX[nutrient]].unit,
                    side.profile,
                    side.source,
                ),
            )
    for position, meal in enumerate(meals):
        at_meal = np.where(meal_of == position, energy, 0.0)
        for kind, percent in (("min", meal.energy_min), ("max", meal.energy_max)):
            if kind == "min" and percent <= 0:
                continue
            value = percent / 100 * requirement
            sign = "≥" if kind == "min" else "≤"
            add(
                at_meal,
                Constraint(
                    f"meal:{meal.id}:{kind}",
                    kind,
                    value,
                    f"{meal.title} energy {sign} {percent:g}% of the requirement "
                    f"({value:,.0f} kcal)",
                    "energy",
                    "kcal",
                    "plan",
                ),
            )
    by_id = {meal.id: position for position, meal in enumerate(meals)}
    for share in targets.meal_shares:
        day = nutrient_rows[INDEX[share.nutrient]]
        at_meal = np.where(meal_of == by_id[share.meal], day, 0.0)
        title = NUTRIENTS[INDEX[share.nutrient]].title
        for kind, share_percent in (("min", share.min_percent), ("max", share.max_percent)):
            if share_percent is None:
                continue
            sign = "≥" if kind == "min" else "≤"
            add(
                at_meal - share_percent / 100 * day,
                Constraint(
                    f"meal-share:{share.meal}:{share.nutrient}:{kind}",
                    kind,
                    0.0,
                    f"{title} at {meals[by_id[share.meal]].title.lower()} {sign} {share_percent:g}% "
                    f"of the day's ({share.profile})",
                    share.nutrient,
                    "%",
                    share.profile,
                    share.source,
                ),
            )
    for f, food in enumerate(foods):
        add(
            (food_of == f).astype(float),
            Constraint(
                f"food-max:{food.id}",
                "max",
                max_per_food,
                f"At most {max_per_food:g} servings of each food a day",
                relaxable=True,
            ),
        )
    groups = {food.group for food in foods}
    for group in sorted(groups):
        if group not in max_per_group:
            continue
        members = np.array([foods[f].group == group for f in food_of])
        add(
            members.astype(float),
            Constraint(
                f"group:{group}",
                "max",
                float(max_per_group[group]),
                f"At most {max_per_group[group]:g} servings of {group} a day",
            ),
        )
    price = np.array([food.price_per_100g * food.serving_g / 100 for food in foods])
    cost = price[food_of]
    matrix = np.vstack(rows) if rows else np.zeros((0, len(columns)))
    deviation_columns = 0
    if objective == "preference":
        matrix, cost, deviation_columns = _preference(
            matrix, foods, food_of, cost, preferred, lower, upper, constraints
        )
    total_columns = matrix.shape[1]
    col_upper = np.full(total_columns, INF)
    is_integer = np.zeros(total_columns, dtype=bool)
    if integer:
        is_integer[: len(columns)] = True
    return Model(
        foods=foods,
        columns=columns,
        meals=meals,
        matrix=matrix,
        row_lower=np.array(lower),
        row_upper=np.array(upper),
        cost=cost,
        col_upper=col_upper,
        integer=is_integer,
        constraints=constraints,
        nutrient_rows=nutrient_rows,
        deviation_columns=deviation_columns,
    )


def _preference(
    matrix: np.ndarray,
    foods: list[Food],
    food_of: np.ndarray,
    cost: np.ndarray,
    preferred: dict[str, float | None],
    lower: list[float],
    upper: list[float],
    constraints: list[Constraint],
) -> tuple[np.ndarray, np.ndarray, int]:
    """Objective weights and deviation rows for the preference objective."""
    weight = np.ones(len(food_of))
    targets: list[tuple[int, float]] = []
    for f, food in enumerate(foods):
        amount = preferred.get(food.id, preferred.get(food.group, 0.0))
        if food.id in preferred or food.group in preferred:
            weight[food_of == f] = 0.0
        if food.id in preferred and amount is not None:
            targets.append((f, float(amount)))
    objective = weight + PREFERENCE_COST_WEIGHT * cost
    deviation = np.zeros((matrix.shape[0], 2 * len(targets)))
    extra_rows = []
    for t, (f, amount) in enumerate(targets):
        row = np.concatenate([(food_of == f).astype(float), np.zeros(2 * len(targets))])
        row[len(food_of) + 2 * t] = -1.0  # servings above the preferred amount
        row[len(food_of) + 2 * t + 1] = 1.0  # servings below it
        extra_rows.append(row)
        lower.append(amount)
        upper.append(amount)
        constraints.append(
            Constraint(
                f"prefer:{foods[f].id}",
                "min",
                amount,
                f"Preferred: {amount:g} servings of {foods[f].name}",
                relaxable=False,
            )
        )
    widened = np.hstack([matrix, deviation])
    if extra_rows:
        widened = np.vstack([widened, np.array(extra_rows)])
    objective = np.concatenate([objective, np.ones(2 * len(targets))])
    return widened, objective, 2 * len(targets)


def to_highs(
    model: Model,
    *,
    integer: bool | None = None,
    time_limit: float = MIP_TIME_LIMIT_S,
    gap: float = MIP_RELATIVE_GAP,
    cpu_time: bool = False,
) -> highspy.Highs:
    """A HiGHS instance holding ``model`` (quiet, deterministic). ``time_limit`` is wall-clock
    seconds, or with ``cpu_time`` seconds of this process's CPU time (enforced from HiGHS's MIP
    interrupt callback; for measuring solution quality against CPU on a shared machine)."""
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("random_seed", 0)
    highs.setOptionValue("threads", 1)
    lp = highspy.HighsLp()
    rows, cols = model.matrix.shape
    lp.num_col_ = cols
    lp.num_row_ = rows
    lp.col_cost_ = model.cost.astype(float)
    lp.col_lower_ = np.zeros(cols)
    lp.col_upper_ = np.where(np.isinf(model.col_upper), highspy.kHighsInf, model.col_upper)
    lp.row_lower_ = np.where(np.isinf(model.row_lower), -highspy.kHighsInf, model.row_lower)
    lp.row_upper_ = np.where(np.isinf(model.row_upper), highspy.kHighsInf, model.row_upper)
    columnwise = model.matrix.T
    nonzero = columnwise != 0
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.concatenate([[0], np.cumsum(nonzero.sum(axis=1))]).astype(np.int32)
    row_index = np.nonzero(nonzero)[1]
    lp.a_matrix_.index_ = row_index.astype(np.int32)
    lp.a_matrix_.value_ = columnwise[nonzero].astype(float)
    use_integer = model.integer.any() if integer is None else integer
    if use_integer:
        lp.integrality_ = [
            highspy.HighsVarType.kInteger if flag else highspy.HighsVarType.kContinuous
            for flag in model.integer
        ]
        highs.setOptionValue("mip_rel_gap", gap)
        if cpu_time:
            _cpu_limit(highs, max(time_limit, 0.01))
        else:
            highs.setOptionValue("time_limit", max(time_limit, 0.01))
    highs.passModel(lp)
    return highs


def _cpu_limit(highs: highspy.Highs, seconds: float) -> None:
    deadline = time.process_time() + seconds

    def check(event: highspy.highs.HighsCallbackEvent) -> None:
        if time.process_time() > deadline:
            event.interrupt()

    highs.cbMipInterrupt.subscribe(check)


def run(highs: highspy.Highs) -> Solution:
    """Solve and read the outcome."""
    started = time.perf_counter()
    highs.run()
    elapsed = (time.perf_counter() - started) * 1000
    status = highs.getModelStatus()
    info = highs.getInfo()
    has_point = info.primal_solution_status == 2  # kSolutionStatusFeasible
    stopped = status in (highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kInterrupt)
    if status == highspy.HighsModelStatus.kOptimal or (stopped and has_point):
        values = np.array(highs.getSolution().col_value)
        gap = info.mip_gap if highs.getLp().integrality_ else None
        return Solution("optimal", values, float(info.objective_function_value), elapsed, gap)
    if stopped:
        return Solution("time-limit", solve_ms=elapsed)
    return Solution("infeasible", solve_ms=elapsed)


def solve(
    model: Model,
    *,
    time_limit: float = MIP_TIME_LIMIT_S,
    gap: float = MIP_RELATIVE_GAP,
    cpu_time: bool = False,
) -> Solution:
    """The LP, or for a model with integer columns the MILP in two stages (see
    :func:`solve_integer`)."""
    if not model.integer.any():
        return run(to_highs(model))
    return solve_integer(model, time_limit, gap, cpu_time=cpu_time)


def solve_integer(
    model: Model, time_limit: float, gap: float = MIP_RELATIVE_GAP, *, cpu_time: bool = False
) -> Solution:
    """Whole servings, in three steps:

    1. Tighten each column's upper bound from the rows that cap it (:func:`tightened`): with
       unbounded columns branch and bound explores servings no plan can have.
    2. Solve the LP relaxation: it tells infeasible targets apart at once, bounds every plan
       from below, and ranks the foods (those it uses, then by reduced cost).
    3. Solve the MILP over the :data:`MIP_CANDIDATE_FOODS` best-ranked foods for at most
       :data:`MIP_FIRST_STAGE_SHARE` of the time: a small problem where HiGHS finds a
       whole-serving plan quickly even for narrow windows (CKD's protein), then the full MILP
       with that plan as its starting incumbent for the rest of the time.

    The gap reported is proven against the better of the LP bound and the full MILP's dual
    bound. ``cpu_time``: the limit counts this process's CPU seconds instead of wall clock."""
    clock = time.process_time if cpu_time else time.perf_counter
    started = clock()
    model = tightened(model)
    relaxed = to_highs(model, integer=False)
    relaxed.run()
    if relaxed.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return Solution("infeasible", solve_ms=(clock() - started) * 1000)
    lower_bound = float(relaxed.getInfo().objective_function_value)
    keep = _candidates(model, relaxed.getSolution(), MIP_CANDIDATE_FOODS)
    first = to_highs(
        _restricted(model, keep),
        time_limit=MIP_FIRST_STAGE_SHARE * time_limit - (clock() - started),
        gap=gap,
        cpu_time=cpu_time,
    )
    first_result = run(first)
    full = to_highs(model, time_limit=time_limit - (clock() - started), gap=gap, cpu_time=cpu_time)
    if first_result.status == "optimal":
        start = np.zeros(model.matrix.shape[1])
        start[keep] = first_result.servings
        incumbent = highspy.HighsSolution()
        incumbent.col_value = np.round(start).tolist()
        incumbent.value_valid = True
        full.setSolution(incumbent)
    result = run(full)
    result.solve_ms = (clock() - started) * 1000
    if result.status == "optimal" and result.objective > 0:
        bound = max(lower_bound, float(full.getInfo().mip_dual_bound))
        result.mip_gap = max(0.0, (result.objective - bound) / result.objective)
    return result


def tightened(model: Model) -> Model:
    """``model`` with each integer column's upper bound cut to what its rows allow: a row with
    no negative coefficient and an upper bound ``U`` (a nutrient ceiling, a meal's energy
    ceiling, the servings limits per food and per group) caps a column with coefficient
    ``a > 0`` at ``U / a``, rounded down for whole servings. Valid for every plan, since the
    other columns of such a row can only add to it."""
    from dataclasses import replace

    matrix = model.matrix
    capping = (matrix.min(axis=1) >= 0) & np.isfinite(model.row_upper)
    rows = matrix[capping]
    with np.errstate(divide="ignore"):
        caps = np.where(rows > 0, model.row_upper[capping][:, None] / rows, INF)
    upper = np.minimum(model.col_upper, caps.min(axis=0, initial=INF))
    upper = np.where(model.integer, np.floor(upper + 1e-9), upper)
    return replace(model, col_upper=upper)


def _candidates(model: Model, relaxed: highspy.HighsSolution, count: int) -> np.ndarray:
    """Columns of the ``count`` foods the LP ranks best: those it uses, then by reduced cost
    (what a serving would add to the cost of the LP optimum); deviation columns always."""
    reduced = np.array(relaxed.col_dual)[: len(model.columns)]
    values = np.array(relaxed.col_value)[: len(model.columns)]
    food_of = np.array([f for f, _m in model.columns])
    rank = np.full(len(model.foods), np.inf)
    for column, food in enumerate(food_of):
        score = -1.0 if values[column] > 1e-9 else reduced[column]
        rank[food] = min(rank[food], score)
    chosen = set(np.argsort(rank, kind="stable")[:count].tolist())
    keep = np.array([food in chosen for food in food_of])
    return np.concatenate([keep, np.ones(model.deviation_columns, dtype=bool)])


def _restricted(model: Model, keep: np.ndarray) -> Model:
    from dataclasses import replace

    return replace(
        model,
        matrix=model.matrix[:, keep],
        cost=model.cost[keep],
        col_upper=model.col_upper[keep],
        integer=model.integer[keep],
    )
