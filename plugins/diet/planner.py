"""One optimisation from request to result: who, which targets, which foods, the solve, and
(when infeasible) the explanation. No FHIR here; :mod:`.fhir_output` writes the answer."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from . import model as lp
from .explain import Explanation, explain
from .foods import Food, default_table, full_table_food
from .nutrients import NUTRIENTS
from .person import Person, energy_requirement
from .profiles import BASE_PROFILE, MissingData, Targets, combine, load_profiles
from .record import PatientFacts
from .request import ADULT_AGE, DietRequest, pattern_spec, plan_spec


class PlanError(ValueError):
    """The request cannot be planned as asked (becomes a 400 OperationOutcome)."""


@dataclass(frozen=True)
class PlannedFood:
    food: Food
    servings: float  # a day
    grams: float
    by_meal: tuple[tuple[str, float], ...]  # (meal id, servings)


@dataclass
class Plan:
    request: DietRequest
    person: Person
    profiles: list[str]
    profile_reasons: list[str]
    targets: Targets
    excluded: list[tuple[str, str]]  # (what, why)
    status: str  # optimal | infeasible
    foods: list[PlannedFood] = field(default_factory=list)
    totals: dict[str, float] = field(default_factory=dict)
    cost: float = 0.0
    explanation: Explanation | None = None
    solve_ms: float = 0.0
    mip_gap: float | None = None
    table_version: str = ""
    meals: list[lp.Meal] = field(default_factory=list)


def person_for(request: DietRequest, facts: PatientFacts | None) -> Person:
    """Request parameters win over the record; the record fills the rest."""
    plan = plan_spec()
    sources: list[tuple[str, str]] = list(facts.sources) if facts else []
    values: dict[str, object] = {}
    for name, attribute in (
        ("age", "age"),
        ("sex", "sex"),
        ("weight", "weight_kg"),
        ("height", "height_cm"),
    ):
        given = getattr(request, attribute)
        if given is not None:
            values[attribute] = given
            sources = [s for s in sources if s[0] != name] + [(name, "request parameter")]
        elif facts is not None:
            values[attribute] = getattr(facts, attribute)
    person = Person(
        age=values.get("age"),  # type: ignore[arg-type]
        sex=values.get("sex"),  # type: ignore[arg-type]
        weight_kg=values.get("weight_kg"),  # type: ignore[arg-type]
        height_cm=values.get("height_cm"),  # type: ignore[arg-type]
        activity=request.activity or plan["energy"]["default_activity"],
        sources=tuple(sources),
    )
    if person.age is not None and person.age < ADULT_AGE:
        raise PlanError(
            f"The diet profiles and Mifflin-St Jeor are for adults; the patient is "
            f"{person.age:g} years old"
        )
    return person


def choose_profiles(
    request: DietRequest, facts: PatientFacts | None
) -> tuple[list[str], list[str]]:
    """The profiles to combine and why each was chosen."""
    if request.profiles:
        chosen = list(dict.fromkeys(request.profiles))
        return chosen, [f"{p}: requested" for p in chosen]
    if facts is not None and facts.condition_profiles:
        chosen = [p for p, _label in facts.condition_profiles]
        return chosen, [
            f"{p}: from the condition '{label}'" for p, label in facts.condition_profiles
        ]
    return [BASE_PROFILE], [f"{BASE_PROFILE}: no profile requested and no matching condition"]


def candidate_foods(
    request: DietRequest, facts: PatientFacts | None
) -> tuple[list[Food], np.ndarray, list[tuple[str, str]]]:
    """The foods the plan may use (nutrients per serving) and what was excluded, and why."""
    table = default_table()
    foods = list(table.foods)
    vectors = [table.per_100g[i] for i in range(len(foods))]
    for ndb in request.include:
        if ndb not in {food.id for food in foods}:
            found = full_table_food(ndb)
            if found is not None:
                foods.append(found[0])
                vectors.append(found[1])
    rules: list[tuple[str, str]] = [(item, "excluded by the request") for item in request.exclude]
    for pattern in request.patterns:
        rules += [(tag, f"{pattern} pattern") for tag in pattern_spec()[pattern]["exclude_tags"]]
    if facts is not None:
        rules += [(tag, f"allergy or intolerance: {label}") for tag, label in facts.allergy_tags]
    keep: list[int] = []
    for position, food in enumerate(foods):
        if not any(what in (food.id, food.group) or what in food.tags for what, _ in rules):
            keep.append(position)
    chosen = [foods[i] for i in keep]
    per_100g = np.vstack([vectors[i] for i in keep]) if keep else np.zeros((0, len(NUTRIENTS)))
    grams = np.array([food.serving_g for food in chosen])
    per_serving = per_100g * grams[:, None] / 100 if keep else per_100g
    return chosen, per_serving, list(dict.fromkeys(rules))


def optimise(
    request: DietRequest,
    facts: PatientFacts | None,
    *,
    milp_time_limit: float = lp.MIP_TIME_LIMIT_S,
) -> Plan:
    spec = plan_spec()
    person = person_for(request, facts)
    energy = spec["energy"]
    kcal, energy_text = energy_requirement(
        person, energy["activity_factors"], float(energy["default_kcal"])
    )
    profiles, reasons = choose_profiles(request, facts)
    try:
        targets = combine(profiles, person, kcal, energy_text)
    except MissingData as missing:
        raise PlanError(str(missing)) from None
    foods, per_serving, excluded = candidate_foods(request, facts)
    if not foods:
        raise PlanError("Every food is excluded; nothing is left to plan with")
    meals = [
        lp.Meal(m["id"], m["code"], m["title"], m["energy_min"], m["energy_max"])
        for m in spec["meals"]
    ]
    max_per_food = request.max_servings_per_food or float(spec["max_servings_per_food"])
    # Whole servings in steps of servingStep: the model counts steps (a half serving is one
    # unit of half the nutrients and price), so its integer variables stay integers.
    step = request.serving_step if request.integer else 1.0
    stepped = [replace(food, serving_g=food.serving_g * step) for food in foods]
    model = lp.build(
        stepped,
        per_serving * step,
        targets,
        meals,
        max_per_food=max_per_food / step,
        max_per_group={k: float(v) / step for k, v in spec["max_servings_per_group"].items()},
        energy_tolerance=energy["tolerance_percent"] / 100,
        objective=request.objective,
        preferred={k: (v / step if v is not None else None) for k, v in request.prefer.items()},
        integer=request.integer,
    )
    solution = lp.solve(model, time_limit=milp_time_limit)
    plan = Plan(
        request=request,
        person=person,
        profiles=profiles,
        profile_reasons=reasons,
        targets=targets,
        excluded=excluded,
        status="optimal" if solution.status == "optimal" else "infeasible",
        solve_ms=solution.solve_ms,
        mip_gap=solution.mip_gap,
        table_version=default_table().version,
        meals=meals,
    )
    if solution.status == "time-limit":
        # Whole servings: branch and bound found no plan in time. Say so; the LP tells
        # whether the targets themselves conflict.
        plan.explanation = explain(model)
        if not plan.explanation.conflicts:
            limit = lp.Constraint(
                "integer:time-limit",
                "max",
                milp_time_limit,
                f"Whole servings: no plan found within {milp_time_limit:g} s; with fractional "
                "servings the targets are feasible (set integer=false, or raise the plugin "
                "setting milp_time_limit_s)",
            )
            plan.explanation = Explanation([[limit]], [])
        return plan
    if solution.status != "optimal":
        plan.explanation = explain(model)
        return plan
    servings = np.maximum(solution.servings[: len(model.columns)], 0.0)
    if request.integer:
        servings = np.round(servings)  # steps, integral up to the solver's tolerance
    totals = model.nutrient_rows[:, : len(model.columns)] @ servings
    servings = servings * step
    by_food: dict[int, list[tuple[str, float]]] = {}
    for column, (position, meal) in enumerate(model.columns):
        if servings[column] > 1e-6:
            by_food.setdefault(position, []).append((meals[meal].id, float(servings[column])))
    plan.totals = {n.id: float(totals[i]) for i, n in enumerate(NUTRIENTS)}
    for position, parts in by_food.items():
        chosen = foods[position]
        amount = sum(s for _meal, s in parts)
        plan.foods.append(PlannedFood(chosen, amount, amount * chosen.serving_g, tuple(parts)))
    plan.foods.sort(key=lambda p: (p.food.group, p.food.name))
    plan.cost = sum(p.grams / 100 * p.food.price_per_100g for p in plan.foods)
    return plan


def profile_versions(plan: Plan) -> list[tuple[str, str]]:
    profiles = load_profiles()
    ids = [BASE_PROFILE, *[p for p in plan.profiles if p != BASE_PROFILE]]
    return [(p, profiles[p].version) for p in ids]
