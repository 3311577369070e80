"""Observations -> readings: codes, components, unit conversion, impossible values."""

from __future__ import annotations

from typing import Any

import pytest

from fhirhub.plugins.vitals.readings import impossible_values, readings_of


def observation(code: str, value: float, unit: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "effectiveDateTime": "2026-01-05T08:00:00Z",
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
        **extra,
    }


def only(observation: dict[str, Any]) -> tuple[str, object]:
    (reading,) = readings_of(observation)
    return reading.parameter, reading.value


def test_fahrenheit_is_converted_to_celsius() -> None:
    parameter, value = only(observation("8310-5", 101.3, "[degF]"))
    assert parameter == "temperature" and value == pytest.approx(38.5)


def test_kilopascal_is_converted_to_mmhg() -> None:
    parameter, value = only(observation("8480-6", 12.0, "kPa"))
    assert parameter == "systolic" and value == pytest.approx(90.0, abs=0.01)


def test_systolic_from_the_blood_pressure_panel() -> None:
    panel = observation("85354-9", 0, "mm[Hg]")
    del panel["valueQuantity"]
    panel["component"] = [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "valueQuantity": {"value": 104, "code": "mm[Hg]"},
        },
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
            "valueQuantity": {"value": 60, "code": "mm[Hg]"},
        },
    ]
    assert only(panel) == ("systolic", 104)


@pytest.mark.parametrize(
    ("code", "value", "unit", "on_oxygen"),
    [
        ("3151-8", 2, "L/min", True),
        ("3151-8", 0, "L/min", False),
        ("3150-0", 21, "%", False),
        ("3150-0", 28, "%", True),
        ("3150-0", 0.4, "1", True),
    ],
)
def test_oxygen_from_flow_or_concentration(
    code: str, value: float, unit: str, on_oxygen: bool
) -> None:
    assert only(observation(code, value, unit)) == ("oxygen", on_oxygen)


def test_level_of_responsiveness() -> None:
    obs = observation("67775-7", 0, "")
    del obs["valueQuantity"]
    obs["valueCodeableConcept"] = {
        "coding": [{"system": "http://snomed.info/sct", "code": "130987000"}]
    }
    assert only(obs) == ("consciousness", "C")


@pytest.mark.parametrize(
    ("code", "value", "unit"),
    [("59408-5", 140, "%"), ("9279-1", -4, "/min"), ("8867-4", -1, "/min"), ("8310-5", 60, "Cel")],
)
def test_impossible_values_are_named_and_never_scored(code: str, value: float, unit: str) -> None:
    obs = observation(code, value, unit)
    assert impossible_values(obs)
    assert readings_of(obs) == []


def test_unknown_unit_gives_no_reading_rather_than_a_guess() -> None:
    assert readings_of(observation("8310-5", 37, "K")) == []


def test_entered_in_error_is_not_scored() -> None:
    assert readings_of(observation("8867-4", 80, "/min", status="entered-in-error")) == []
