"""Vital-signs Observations -> readings in the units the charts use.

One Observation gives zero or more :class:`Reading`: a respiratory rate, an SpO2, a systolic
pressure (alone or as the 8480-6 component of the 85354-9 panel), a pulse, a temperature, an
inhaled oxygen flow or concentration (-> on oxygen or on air), or a level of responsiveness
(-> an ACVPU letter). Units are converted to the chart's (°F -> °C, kPa -> mmHg, a fraction
-> %); an unknown unit gives no reading rather than a guess.

Impossible values (an SpO2 of 140 %, a negative rate) are *refused* at write time by the
plugin (:func:`impossible_values`), and if one is stored anyway (written before the plugin was
enabled) it is never scored: :func:`readings_of` drops it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fhirhub.plugins.vitals import codes

#: Observation statuses whose values may be scored.
SCORABLE_STATUSES = frozenset({"final", "amended", "corrected", "preliminary"})

#: Physically possible ranges, in chart units (outside: refused at write, never scored).
POSSIBLE: dict[str, tuple[float, float]] = {
    codes.RESPIRATION: (0, 150),
    codes.SPO2: (0, 100),
    codes.SYSTOLIC: (0, 400),
    codes.PULSE: (0, 400),
    codes.TEMPERATURE: (10, 50),
    "o2-flow": (0, 100),
    "o2-concentration": (0, 100),
}
#: Plausible ranges (the entry form asks to confirm values outside them; still scored).
PLAUSIBLE: dict[str, tuple[float, float]] = {
    codes.RESPIRATION: (4, 60),
    codes.SPO2: (50, 100),
    codes.SYSTOLIC: (50, 260),
    codes.PULSE: (25, 220),
    codes.TEMPERATURE: (30, 43),
}

_MMHG_PER_KPA = 7.50062


@dataclass(frozen=True)
class Reading:
    """One parameter's value at a time, from one Observation (``source``: its reference)."""

    parameter: str
    value: float | str | bool
    time: datetime
    source: str
    #: The source's version (part of the score's identity: a corrected value is a new input).
    version: str = ""
    unit: str = ""


def codes_of(concept: Any) -> set[str]:
    """The codes of a CodeableConcept (any system: LOINC is asserted by value)."""
    if not isinstance(concept, dict):
        return set()
    return {str(c.get("code")) for c in concept.get("coding") or [] if isinstance(c, dict)}


def is_vital_input(observation: dict[str, Any]) -> bool:
    """Whether an Observation carries one of the scored parameters."""
    found = codes_of(observation.get("code"))
    if found & codes.INPUT_CODES:
        return True
    return any(
        codes_of(c.get("code")) & {codes.SYSTOLIC_CODE}
        for c in observation.get("component") or []
        if isinstance(c, dict)
    )


def effective_time(observation: dict[str, Any]) -> datetime | None:
    """When the value was measured (``effectiveDateTime``, a period's start, else ``issued``)."""
    text = observation.get("effectiveDateTime") or observation.get("effectiveInstant")
    if not text and isinstance(observation.get("effectivePeriod"), dict):
        text = observation["effectivePeriod"].get("start")
    text = text or observation.get("issued")
    return parse_time(text) if isinstance(text, str) else None


def parse_time(text: str) -> datetime | None:
    """A FHIR dateTime as an aware datetime (a date alone: midnight UTC; no zone: UTC)."""
    try:
        if len(text) == 4:
            text += "-01-01"
        elif len(text) == 7:
            text += "-01"
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _quantity(element: dict[str, Any]) -> tuple[float, str] | None:
    quantity = element.get("valueQuantity")
    if not isinstance(quantity, dict) or not isinstance(quantity.get("value"), int | float):
        return None
    unit = str(quantity.get("code") or quantity.get("unit") or "")
    return float(quantity["value"]), unit


def _celsius(value: float, unit: str) -> float | None:
    if unit in ("Cel", "°C", "C", "degC", "cel"):
        return value
    if unit in ("[degF]", "°F", "F", "degF"):
        return (value - 32.0) * 5.0 / 9.0
    return None


def _mmhg(value: float, unit: str) -> float | None:
    if unit in ("mm[Hg]", "mmHg", "mm Hg"):
        return value
    if unit in ("kPa", "kpa"):
        return value * _MMHG_PER_KPA
    return None


def _per_minute(value: float, unit: str) -> float | None:
    return value if unit in ("/min", "{breaths}/min", "{beats}/min", "1/min", "bpm", "") else None


def _percent(value: float, unit: str) -> float | None:
    if unit in ("%", "percent"):
        return value
    if unit == "1" and 0 <= value <= 1:
        return value * 100.0
    return None


def _flow(value: float, unit: str) -> float | None:
    return value if unit in ("L/min", "l/min", "L/min{O2}") else None


def raw_values(observation: dict[str, Any]) -> list[tuple[str, float]]:
    """(parameter, value in chart units) for each numeric input the Observation carries;
    ``o2-flow`` and ``o2-concentration`` stand for the oxygen inputs."""
    found = codes_of(observation.get("code"))
    out: list[tuple[str, float]] = []
    parts: list[tuple[set[str], dict[str, Any]]] = [(found, observation)]
    for component in observation.get("component") or []:
        if isinstance(component, dict):
            parts.append((codes_of(component.get("code")), component))
    for part_codes, element in parts:
        quantity = _quantity(element)
        if quantity is None:
            continue
        value, unit = quantity
        converted: tuple[str, float | None] | None = None
        if codes.RESPIRATION_CODE in part_codes:
            converted = (codes.RESPIRATION, _per_minute(value, unit))
        elif part_codes & set(codes.SPO2_CODES):
            converted = (codes.SPO2, _percent(value, unit))
        elif codes.SYSTOLIC_CODE in part_codes:
            converted = (codes.SYSTOLIC, _mmhg(value, unit))
        elif codes.PULSE_CODE in part_codes:
            converted = (codes.PULSE, _per_minute(value, unit))
        elif codes.TEMPERATURE_CODE in part_codes:
            converted = (codes.TEMPERATURE, _celsius(value, unit))
        elif codes.O2_FLOW_CODE in part_codes:
            converted = ("o2-flow", _flow(value, unit))
        elif codes.O2_CONCENTRATION_CODE in part_codes:
            converted = ("o2-concentration", _percent(value, unit))
        if converted is not None and converted[1] is not None:
            out.append((converted[0], converted[1]))
    return out


def impossible_values(observation: dict[str, Any]) -> list[str]:
    """Why the Observation's values cannot be real (empty when they can)."""
    problems = []
    for parameter, value in raw_values(observation):
        low, high = POSSIBLE[parameter]
        if not low <= value <= high:
            problems.append(f"{parameter} {value:g} is outside the possible range {low:g}-{high:g}")
    return problems


def readings_of(observation: dict[str, Any], version: str = "") -> list[Reading]:
    """The scorable readings of one Observation (module docstring)."""
    if observation.get("status") not in SCORABLE_STATUSES:
        return []
    time = effective_time(observation)
    if time is None:
        return []
    source = f"Observation/{observation.get('id')}"
    if impossible_values(observation):
        return []
    readings = []
    for parameter, value in raw_values(observation):
        if parameter == "o2-flow":
            readings.append(Reading(codes.OXYGEN, value > 0, time, source, version, "L/min"))
        elif parameter == "o2-concentration":
            readings.append(Reading(codes.OXYGEN, value > 21, time, source, version, "%"))
        else:
            readings.append(Reading(parameter, value, time, source, version, _UNITS[parameter]))
    if codes.CONSCIOUSNESS_CODE in codes_of(observation.get("code")):
        letter = next(
            (
                codes.ACVPU[c]
                for c in codes_of(observation.get("valueCodeableConcept"))
                if c in codes.ACVPU
            ),
            None,
        )
        if letter is not None:
            readings.append(Reading(codes.CONSCIOUSNESS, letter, time, source, version))
    return readings


_UNITS = {
    codes.RESPIRATION: "/min",
    codes.SPO2: "%",
    codes.SYSTOLIC: "mm[Hg]",
    codes.PULSE: "/min",
    codes.TEMPERATURE: "Cel",
}
