"""The FHIR the optimiser answers with: the output ``Parameters``, the ``NutritionOrder``
(http://hl7.org/fhir/R4/nutritionorder.html) and its ``Provenance``
(http://hl7.org/fhir/R4/provenance.html).

NutritionOrder: ``status`` draft until a dietitian approves it (``$diet-approve``), ``intent``
order, ``oralDiet.type`` the profiles, ``oralDiet.nutrient`` one entry per upper limit (R4 has
no element for a minimum, so minimums and the food list are in ``oralDiet.instruction`` as
text), the foods as structured items in the ``diet-food-item`` extension on ``oralDiet``
(food as an SR28 Coding, grams, servings, household measure, meal), excluded foods in
``excludeFoodModifier``, eating patterns in ``foodPreferenceModifier``, the allergies that
excluded foods in ``allergyIntolerance``. R4 invariant nor-1 (an oral diet, supplement or
enteral formula) holds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.metadata import version as package_version
from typing import Any

from .nutrients import NUTRIENTS
from .planner import Plan, profile_versions
from .profiles import load_profiles
from .request import plan_spec

BASE = "https://fhirhub.dev/fhir"
FOOD_ITEM_EXTENSION = f"{BASE}/StructureDefinition/diet-food-item"
PROFILE_SYSTEM = f"{BASE}/CodeSystem/diet-profile"
NUTRIENT_SYSTEM = f"{BASE}/CodeSystem/diet-nutrient"
PATTERN_SYSTEM = f"{BASE}/CodeSystem/diet-pattern"
SR28_SYSTEM = f"{BASE}/CodeSystem/usda-sr28"
#: meta.tag on every NutritionOrder this plugin writes (the approval guard looks for it).
ORDER_TAG = {"system": f"{BASE}/CodeSystem/plugin", "code": "diet", "display": "diet optimiser"}
UCUM = "http://unitsofmeasure.org"
PROVENANCE_ACTIVITY = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"


def _decimal(value: float, digits: int = 1) -> float:
    return round(float(value), digits)


def plan_text(plan: Plan) -> str:
    """The readable plan: foods per meal, then the totals against the targets."""
    lines = [f"Daily diet plan ({', '.join(plan.profiles)}; {plan.targets.energy_text})."]
    if plan.status != "optimal":
        lines.append("No plan meets every target. Conflicting targets:")
        assert plan.explanation is not None
        for number, conflict in enumerate(plan.explanation.conflicts, start=1):
            lines.append(f"  {number}. " + " versus ".join(c.label for c in conflict))
        if plan.explanation.relaxations:
            lines.append("Smallest change that makes a plan possible:")
            for relaxation in plan.explanation.relaxations:
                c = relaxation.constraint
                unit = f" {c.unit}" if c.unit and c.unit != "%" else ""
                lines.append(
                    f"  - {c.label}: {'lower' if c.kind == 'min' else 'raise'} the bound to "
                    f"{relaxation.suggested:,.1f}{unit}"
                )
        return "\n".join(lines)
    for meal in plan.meals:
        items = [
            (p, servings)
            for p in plan.foods
            for meal_id, servings in p.by_meal
            if meal_id == meal.id
        ]
        if not items:
            continue
        lines.append(f"{meal.title}:")
        for planned, servings in items:
            grams = servings * planned.food.serving_g
            lines.append(
                f"  - {planned.food.name}: {servings:.2g} x {planned.food.serving} ({grams:,.0f} g)"
            )
    lines.append("Totals against targets:")
    for nutrient in NUTRIENTS:
        low, high = _limits(plan, nutrient.id)
        target = _target_text(low, high, nutrient.unit)
        lines.append(
            f"  - {nutrient.title}: {nutrient.format(plan.totals[nutrient.id])}"
            + (f" (target {target})" if target else "")
        )
    lines.append(f"Sample cost: ${plan.cost:.2f} a day.")
    if plan.excluded:
        lines.append("Excluded: " + "; ".join(f"{what} ({why})" for what, why in plan.excluded))
    return "\n".join(lines)


def _target_text(low: float | None, high: float | None, unit: str) -> str:
    if low is not None and high is not None:
        return f"{low:,.1f}-{high:,.1f} {unit}"
    if low is not None:
        return f"≥ {low:,.1f} {unit}"
    if high is not None:
        return f"≤ {high:,.1f} {unit}"
    return ""


def _limits(plan: Plan, nutrient: str) -> tuple[float | None, float | None]:
    if nutrient == "energy":
        tolerance = plan_spec()["energy"]["tolerance_percent"] / 100
        return (
            plan.targets.energy_kcal * (1 - tolerance),
            plan.targets.energy_kcal * (1 + tolerance),
        )
    return plan.targets.bound(nutrient)


def nutrition_order(plan: Plan, patient_id: str | None) -> dict[str, Any]:
    """The order; without a patient (the type-level form with explicit age, sex and weight)
    ``patient`` is a display-only Reference (R4 requires the element) and it is not stored."""
    profiles = load_profiles()
    types = [
        {
            "coding": [{"system": PROFILE_SYSTEM, "code": p, "display": profiles[p].title}],
            "text": profiles[p].title,
        }
        for p in plan.profiles
    ]
    nutrient_limits = []
    for nutrient in NUTRIENTS:
        _low, high = _limits(plan, nutrient.id)
        if high is None or nutrient.id == "energy":
            continue
        nutrient_limits.append(
            {
                "modifier": {
                    "coding": [
                        {"system": NUTRIENT_SYSTEM, "code": nutrient.id, "display": nutrient.title}
                    ],
                    "text": f"{nutrient.title} (maximum)",
                },
                "amount": {
                    "value": _decimal(high),
                    "unit": nutrient.unit,
                    "system": UCUM,
                    "code": nutrient.ucum,
                },
            }
        )
    items = [
        {
            "url": FOOD_ITEM_EXTENSION,
            "extension": [
                {
                    "url": "food",
                    "valueCoding": {
                        "system": SR28_SYSTEM,
                        "code": planned.food.id,
                        "display": planned.food.name,
                    },
                },
                {"url": "meal", "valueCode": meal},
                {"url": "servings", "valueDecimal": _decimal(servings, 3)},
                {"url": "serving", "valueString": planned.food.serving},
                {
                    "url": "quantity",
                    "valueQuantity": {
                        "value": _decimal(servings * planned.food.serving_g),
                        "unit": "g",
                        "system": UCUM,
                        "code": "g",
                    },
                },
            ],
        }
        for planned in plan.foods
        for meal, servings in planned.by_meal
    ]
    order: dict[str, Any] = {
        "resourceType": "NutritionOrder",
        "meta": {"tag": [ORDER_TAG]},
        "status": "draft",
        "intent": "order",
        "patient": {"reference": f"Patient/{patient_id}"}
        if patient_id
        else {"display": "the person described by the request parameters"},
        "dateTime": datetime.now(UTC).isoformat(timespec="seconds"),
        "oralDiet": {
            "type": types,
            "nutrient": nutrient_limits,
            "instruction": plan_text(plan),
            "extension": items,
        },
        "note": [
            {
                "text": "Computed by the fhirhub diet optimiser; a dietitian reviews and "
                "approves it before it is active. " + "; ".join(plan.profile_reasons)
            }
        ],
    }
    excluded = [
        {"text": f"{what} ({why})"}
        for what, why in plan.excluded
        if what not in _pattern_tags(plan)
    ]
    if excluded:
        order["excludeFoodModifier"] = excluded
    if plan.request.patterns:
        order["foodPreferenceModifier"] = [
            {"coding": [{"system": PATTERN_SYSTEM, "code": p}], "text": p}
            for p in plan.request.patterns
        ]
    return order


def _pattern_tags(plan: Plan) -> set[str]:
    return {what for what, why in plan.excluded if why.endswith(" pattern")}


def provenance(plan: Plan, order_full_url: str, agent: dict[str, Any]) -> dict[str, Any]:
    """What the order was computed from: profile versions, the food table, the solver."""
    versions = profile_versions(plan)
    entities = [
        {
            "role": "source",
            "what": {
                "identifier": {"system": PROFILE_SYSTEM, "value": f"{profile}|{version}"},
                "display": f"diet profile {profile} version {version}",
            },
        }
        for profile, version in versions
    ]
    entities.append(
        {
            "role": "source",
            "what": {
                "identifier": {"system": SR28_SYSTEM, "value": "sr28"},
                "display": f"food table: {plan.table_version}",
            },
        }
    )
    entities.append(
        {
            "role": "source",
            "what": {"reference": f"Patient/{plan.request.patient}"}
            if plan.request.patient
            else {"display": "request parameters"},
        }
    )
    solver = f"HiGHS via highspy {package_version('highspy')}"
    return {
        "resourceType": "Provenance",
        "target": [{"reference": order_full_url}],
        "recorded": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "activity": {
            "coding": [{"system": PROVENANCE_ACTIVITY, "code": "CREATE", "display": "create"}],
            "text": "diet optimisation ("
            + ("MILP, whole servings" if plan.request.integer else "LP")
            + f", objective {plan.request.objective})",
        },
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "assembler",
                            "display": "Assembler",
                        }
                    ]
                },
                "who": {"display": f"fhirhub diet optimiser ({solver})"},
            },
            agent,
        ],
        "entity": entities,
        "reason": [{"text": "; ".join(plan.profile_reasons)}],
    }


def output_parameters(plan: Plan, order: dict[str, Any] | None) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": "status", "valueCode": plan.status},
    ]
    if order is not None:
        parameters.append({"name": "nutritionOrder", "resource": order})
    parameters.append({"name": "plan", "valueString": plan_text(plan)})
    if plan.status == "optimal":
        for nutrient in NUTRIENTS:
            low, high = _limits(plan, nutrient.id)
            parts: list[dict[str, Any]] = [
                {"name": "nutrient", "valueCode": nutrient.id},
                {"name": "value", "valueDecimal": _decimal(plan.totals[nutrient.id], 2)},
                {"name": "unit", "valueCode": nutrient.unit},
            ]
            if low is not None:
                parts.append({"name": "min", "valueDecimal": _decimal(low, 2)})
            if high is not None:
                parts.append({"name": "max", "valueDecimal": _decimal(high, 2)})
            parameters.append({"name": "total", "part": parts})
        for planned in plan.foods:
            parameters.append(
                {
                    "name": "food",
                    "part": [
                        {"name": "food", "valueString": planned.food.id},
                        {"name": "name", "valueString": planned.food.name},
                        {"name": "group", "valueCode": planned.food.group},
                        {"name": "grams", "valueDecimal": _decimal(planned.grams, 2)},
                        {"name": "servings", "valueDecimal": _decimal(planned.servings, 3)},
                        {"name": "serving", "valueString": planned.food.serving},
                        *[
                            {"name": "meal", "valueCode": meal}
                            for meal, _servings in planned.by_meal
                        ],
                    ],
                }
            )
        parameters.append({"name": "cost", "valueDecimal": _decimal(plan.cost, 2)})
        if plan.mip_gap is not None:
            parameters.append({"name": "mipGap", "valueDecimal": _decimal(plan.mip_gap, 4)})
    else:
        assert plan.explanation is not None
        relaxed = {r.constraint.id: r.suggested for r in plan.explanation.relaxations}
        for number, conflict in enumerate(plan.explanation.conflicts, start=1):
            for constraint in conflict:
                parts = [
                    {"name": "conflict", "valueInteger": number},
                    {"name": "constraint", "valueString": constraint.label},
                    {"name": "id", "valueString": constraint.id},
                    {"name": "bound", "valueCode": constraint.kind},
                    {"name": "value", "valueDecimal": _decimal(constraint.bound, 2)},
                ]
                if constraint.nutrient:
                    parts.append({"name": "nutrient", "valueCode": constraint.nutrient})
                if constraint.unit:
                    parts.append({"name": "unit", "valueCode": constraint.unit})
                if constraint.profile:
                    parts.append({"name": "profile", "valueCode": constraint.profile})
                if constraint.id in relaxed:
                    parts.append(
                        {"name": "relaxTo", "valueDecimal": _decimal(relaxed[constraint.id], 2)}
                    )
                parameters.append({"name": "explanation", "part": parts})
        for relaxation in plan.explanation.relaxations:
            c = relaxation.constraint
            parameters.append(
                {
                    "name": "relaxation",
                    "part": [
                        {"name": "constraint", "valueString": c.label},
                        {"name": "id", "valueString": c.id},
                        {"name": "bound", "valueCode": c.kind},
                        {"name": "value", "valueDecimal": _decimal(c.bound, 2)},
                        {"name": "relaxTo", "valueDecimal": _decimal(relaxation.suggested, 2)},
                    ],
                }
            )
    for profile, version in profile_versions(plan):
        parameters.append({"name": "profileVersion", "valueString": f"{profile}|{version}"})
    parameters.append({"name": "dataVersion", "valueString": plan.table_version})
    parameters.append({"name": "energy", "valueString": plan.targets.energy_text})
    return {"resourceType": "Parameters", "parameter": parameters}
