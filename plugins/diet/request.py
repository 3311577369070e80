"""The ``$diet-optimise`` input ``Parameters``, checked and turned into a :class:`DietRequest`.

Every problem is a 400 OperationOutcome naming the parameter (``FhirError`` via ``invalid``),
before anything is read or solved. See docs/diet.md for the parameter table.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from fhirhub.sdk import invalid

from .foods import default_table, sr28_rows
from .profiles import load_profiles

DATA = Path(__file__).resolve().parent / "data"
OBJECTIVES = ("cost", "preference")
SEXES = ("male", "female", "other", "unknown")
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
#: UCUM units accepted for weight and height, with their factor to kg and cm.
WEIGHT_UNITS = {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237, "lb": 0.45359237}
HEIGHT_UNITS = {"cm": 1.0, "m": 100.0, "[in_i]": 2.54, "in": 2.54}
#: Adults only: the profiles and Mifflin-St Jeor are for adults.
ADULT_AGE = 18
#: Plausibility limits: a value outside is a typing error, not a person.
LIMITS = {"age": (0, 130), "weight": (20, 400), "height": (90, 250)}


@dataclass
class DietRequest:
    profiles: list[str] = field(default_factory=list)  # empty: from the patient's conditions
    objective: str = "cost"
    exclude: list[str] = field(default_factory=list)  # food ids, groups or tags
    include: list[str] = field(default_factory=list)  # SR28 NDB numbers outside the list
    prefer: dict[str, float | None] = field(default_factory=dict)
    patterns: list[str] = field(default_factory=list)
    max_servings_per_food: float | None = None
    integer: bool = False
    serving_step: float = 1.0  # with integer: servings come in multiples of this
    store: bool = True
    activity: str | None = None
    patient: str | None = None
    age: float | None = None
    sex: str | None = None
    weight_kg: float | None = None
    height_cm: float | None = None


@cache
def plan_spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads((DATA / "plan.json").read_text(encoding="utf-8"))
    return spec


@cache
def pattern_spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads((DATA / "patterns.json").read_text(encoding="utf-8"))
    return spec["patterns"]  # type: ignore[no-any-return]


def known_tags() -> set[str]:
    return {tag for food in default_table().foods for tag in food.tags}


def parse(body: dict[str, Any] | None, query: dict[str, list[str]]) -> DietRequest:
    """The request from a POSTed ``Parameters`` (or, for a GET, the query parameters)."""
    parts: list[tuple[str, dict[str, Any]]] = []
    if body is not None:
        if body.get("resourceType") != "Parameters":
            raise invalid("$diet-optimise takes a Parameters resource")
        for parameter in body.get("parameter", []):
            if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str):
                raise invalid("Each Parameters.parameter needs a name")
            parts.append((parameter["name"], parameter))
    else:
        for name, values in query.items():
            parts.extend((name, {"name": name, "valueString": value}) for value in values)
    request = DietRequest()
    for name, parameter in parts:
        handler = _HANDLERS.get(name)
        if handler is None:
            raise invalid(
                f"Unknown parameter {name!r} for $diet-optimise; known: {', '.join(_HANDLERS)}",
                expression=(f"Parameters.parameter.where(name='{name}')",),
            )
        handler(request, parameter)
    return request


def _value(parameter: dict[str, Any]) -> Any:
    for key, value in parameter.items():
        if key.startswith("value"):
            return value
    if "part" in parameter:
        return {part.get("name"): _value(part) for part in parameter["part"]}
    raise invalid(f"Parameter {parameter['name']!r} has no value")


def _text(parameter: dict[str, Any]) -> str:
    value = _value(parameter)
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"Parameter {parameter['name']!r} must be a code or string")
    return value.strip()


def _number(parameter: dict[str, Any], units: dict[str, float] | None = None) -> float:
    value = _value(parameter)
    name = parameter["name"]
    factor = 1.0
    if isinstance(value, dict) and "value" in value:  # a Quantity
        unit = value.get("code") or value.get("unit") or ""
        if units is not None:
            if unit not in units:
                raise invalid(f"Parameter {name!r}: unit {unit!r} is not one of {list(units)}")
            factor = units[unit]
        value = value["value"]
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise invalid(f"Parameter {name!r} must be a number, not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"Parameter {name!r} must be a number")
    number = float(value) * factor
    if number < 0:
        raise invalid(f"Parameter {name!r} may not be negative ({number:g})")
    low, high = LIMITS.get(name, (0, float("inf")))
    if not low <= number <= high:
        raise invalid(f"Parameter {name!r} = {number:g} is outside {low:g}-{high:g}")
    return number


def _boolean(parameter: dict[str, Any]) -> bool:
    value = _value(parameter)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in ("true", "false"):
        return value == "true"
    raise invalid(f"Parameter {parameter['name']!r} must be true or false")


def _profile(request: DietRequest, parameter: dict[str, Any]) -> None:
    profile = _text(parameter)
    if profile not in load_profiles():
        known = ", ".join(sorted(load_profiles()))
        raise invalid(f"Unknown profile {profile!r}; known profiles: {known}")
    request.profiles.append(profile)


def _objective(request: DietRequest, parameter: dict[str, Any]) -> None:
    objective = _text(parameter)
    if objective not in OBJECTIVES:
        raise invalid(f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")
    request.objective = objective


def _food_reference(value: str, name: str, *, full_table: bool = False) -> str:
    table = default_table()
    if value in {food.id for food in table.foods} or value in table.groups:
        return value
    if not full_table and value in known_tags():
        return value
    if full_table and value in sr28_rows():
        return value
    kind = "an SR28 NDB number" if full_table else "a food id, food group or tag"
    raise invalid(f"Parameter {name!r}: {value!r} is not {kind}")


def _exclude(request: DietRequest, parameter: dict[str, Any]) -> None:
    request.exclude.append(_food_reference(_text(parameter), "exclude"))


def _include(request: DietRequest, parameter: dict[str, Any]) -> None:
    request.include.append(_food_reference(_text(parameter), "include", full_table=True))


def _prefer(request: DietRequest, parameter: dict[str, Any]) -> None:
    value = _value(parameter)
    if isinstance(value, dict):
        food = value.get("food")
        if not isinstance(food, str):
            raise invalid("Parameter 'prefer' needs a 'food' part")
        servings = value.get("servings")
        amount = None
        if servings is not None:
            amount = _number({"name": "prefer.servings", "valueDecimal": servings})
        request.prefer[_food_reference(food, "prefer")] = amount
    else:
        request.prefer[_food_reference(_text(parameter), "prefer")] = None


def _pattern(request: DietRequest, parameter: dict[str, Any]) -> None:
    pattern = _text(parameter)
    if pattern not in pattern_spec():
        raise invalid(f"Unknown pattern {pattern!r}; known: {', '.join(pattern_spec())}")
    request.patterns.append(pattern)


def _max_servings(request: DietRequest, parameter: dict[str, Any]) -> None:
    value = _number(parameter)
    if value < 1:
        raise invalid("maxServingsPerFood must be at least 1")
    request.max_servings_per_food = value


def _integer(request: DietRequest, parameter: dict[str, Any]) -> None:
    request.integer = _boolean(parameter)


SERVING_STEPS = (0.25, 0.5, 1.0)


def _serving_step(request: DietRequest, parameter: dict[str, Any]) -> None:
    step = _number(parameter)
    if step not in SERVING_STEPS:
        raise invalid(f"servingStep must be one of {', '.join(f'{s:g}' for s in SERVING_STEPS)}")
    request.serving_step = step


def _store(request: DietRequest, parameter: dict[str, Any]) -> None:
    request.store = _boolean(parameter)


def _activity(request: DietRequest, parameter: dict[str, Any]) -> None:
    activity = _text(parameter)
    factors = plan_spec()["energy"]["activity_factors"]
    if activity not in factors:
        raise invalid(f"activity must be one of {', '.join(factors)}, not {activity!r}")
    request.activity = activity


def _patient(request: DietRequest, parameter: dict[str, Any]) -> None:
    value = _value(parameter)
    reference = value.get("reference", "") if isinstance(value, dict) else str(value)
    patient_id = reference.removeprefix("Patient/")
    if not FHIR_ID.match(patient_id):
        raise invalid(f"patient must be a Patient reference, not {reference!r}")
    request.patient = patient_id


def _age(request: DietRequest, parameter: dict[str, Any]) -> None:
    request.age = _number(parameter)


def _sex(request: DietRequest, parameter: dict[str, Any]) -> None:
    sex = _text(parameter)
    if sex not in SEXES:
        raise invalid(f"sex must be one of {', '.join(SEXES)} (FHIR administrative-gender)")
    request.sex = sex


def _weight(request: DietRequest, parameter: dict[str, Any]) -> None:
    request.weight_kg = _number(parameter, WEIGHT_UNITS)


def _height(request: DietRequest, parameter: dict[str, Any]) -> None:
    request.height_cm = _number(parameter, HEIGHT_UNITS)


_HANDLERS = {
    "profile": _profile,
    "objective": _objective,
    "exclude": _exclude,
    "maxServingsPerFood": _max_servings,
    "patient": _patient,
    "age": _age,
    "sex": _sex,
    "weight": _weight,
    "height": _height,
    "include": _include,
    "prefer": _prefer,
    "pattern": _pattern,
    "integer": _integer,
    "servingStep": _serving_step,
    "activity": _activity,
    "store": _store,
}
