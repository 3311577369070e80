"""NEWS2 and qSOFA against the RCP NEWS2 chart (2017) and Sepsis-3.

Every expected value below is read off the chart, row by row, not computed by the code: each
band is tested at both its edges (and the neighbouring values on the other side)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fhirhub.plugins.vitals import codes
from fhirhub.plugins.vitals.readings import Reading
from fhirhub.plugins.vitals.scores import (
    consciousness_points,
    news2,
    news2_risk,
    pulse_points,
    qsofa,
    respiration_points,
    spo2_scale1_points,
    spo2_scale2_points,
    systolic_points,
    temperature_points,
)

T = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)

# (value, points) from the chart; both edges of every band.
RESPIRATION = [
    (0, 3),
    (8, 3),
    (9, 1),
    (11, 1),
    (12, 0),
    (20, 0),
    (21, 2),
    (24, 2),
    (25, 3),
    (60, 3),
]
SPO2_SCALE1 = [(70, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]
SYSTOLIC = [(60, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3)]
PULSE = [
    (30, 3),
    (40, 3),
    (41, 1),
    (50, 1),
    (51, 0),
    (90, 0),
    (91, 1),
    (110, 1),
    (111, 2),
    (130, 2),
    (131, 3),
    (180, 3),
]
TEMPERATURE = [
    (34.0, 3),
    (35.0, 3),
    (35.1, 1),
    (36.0, 1),
    (36.1, 0),
    (38.0, 0),
    (38.1, 1),
    (39.0, 1),
    (39.1, 2),
    (41.0, 2),
]


@pytest.mark.parametrize(("value", "points"), RESPIRATION)
def test_respiration_bands(value: float, points: int) -> None:
    assert respiration_points(value) == points


@pytest.mark.parametrize(("value", "points"), SPO2_SCALE1)
def test_spo2_scale1_bands(value: float, points: int) -> None:
    assert spo2_scale1_points(value) == points


@pytest.mark.parametrize(
    ("value", "on_oxygen", "points"),
    [
        (80, False, 3),
        (83, False, 3),
        (84, False, 2),
        (85, False, 2),
        (86, False, 1),
        (87, False, 1),
        (88, False, 0),
        (92, False, 0),
        (88, True, 0),
        (92, True, 0),
        # >= 93 on air scores 0 ...
        (93, False, 0),
        (97, False, 0),
        (100, False, 0),
        # ... on oxygen: 93-94 -> 1, 95-96 -> 2, >= 97 -> 3.
        (93, True, 1),
        (94, True, 1),
        (95, True, 2),
        (96, True, 2),
        (97, True, 3),
        (100, True, 3),
    ],
)
def test_spo2_scale2_bands(value: float, on_oxygen: bool, points: int) -> None:
    assert spo2_scale2_points(value, on_oxygen) == points


@pytest.mark.parametrize(("value", "points"), SYSTOLIC)
def test_systolic_bands(value: float, points: int) -> None:
    assert systolic_points(value) == points


@pytest.mark.parametrize(("value", "points"), PULSE)
def test_pulse_bands(value: float, points: int) -> None:
    assert pulse_points(value) == points


@pytest.mark.parametrize(("value", "points"), TEMPERATURE)
def test_temperature_bands(value: float, points: int) -> None:
    assert temperature_points(value) == points


@pytest.mark.parametrize(("letter", "points"), [("A", 0), ("C", 3), ("V", 3), ("P", 3), ("U", 3)])
def test_consciousness_new_confusion_scores_like_v_p_u(letter: str, points: int) -> None:
    assert consciousness_points(letter) == points


def test_values_between_chart_steps_round_to_the_chart_resolution() -> None:
    assert temperature_points(35.04) == 3  # 35.0
    assert temperature_points(35.05) == 1  # 35.1
    assert systolic_points(90.4) == 3  # 90
    assert systolic_points(90.5) == 2  # 91
    assert respiration_points(20.5) == 2  # 21


@pytest.mark.parametrize(
    ("total", "max_single", "risk"),
    [
        (0, 0, "low"),
        (4, 2, "low"),
        (3, 3, "low-medium"),
        (4, 3, "low-medium"),
        (5, 2, "medium"),
        (5, 3, "medium"),
        (6, 3, "medium"),
        (7, 2, "high"),
        (20, 3, "high"),
    ],
)
def test_clinical_risk(total: int, max_single: int, risk: str) -> None:
    assert news2_risk(total, max_single) == risk


def vitals(**values: object) -> dict[str, Reading]:
    return {name: Reading(name, value, T, f"Observation/{name}") for name, value in values.items()}  # type: ignore[arg-type]


# Worked cases, each scored by hand from the chart (points per row in the comment).
WORKED = [
    # RR 16 (0), SpO2 97 (0), air (0), SBP 125 (0), HR 72 (0), A (0), 36.8 (0) = 0, low
    (
        dict(
            respiration=16,
            spo2=97,
            oxygen=False,
            systolic=125,
            pulse=72,
            consciousness="A",
            temperature=36.8,
        ),
        False,
        0,
        "low",
    ),
    # RR 22 (2), SpO2 95 (1), air (0), SBP 105 (1), HR 95 (1), A (0), 38.3 (1) = 6, medium
    (
        dict(
            respiration=22,
            spo2=95,
            oxygen=False,
            systolic=105,
            pulse=95,
            consciousness="A",
            temperature=38.3,
        ),
        False,
        6,
        "medium",
    ),
    # RR 18 (0), SpO2 96 (0), air (0), SBP 130 (0), HR 80 (0), C (3), 37.0 (0) = 3, low-medium
    (
        dict(
            respiration=18,
            spo2=96,
            oxygen=False,
            systolic=130,
            pulse=80,
            consciousness="C",
            temperature=37.0,
        ),
        False,
        3,
        "low-medium",
    ),
    # RR 26 (3), SpO2 90 (3), O2 (2), SBP 88 (3), HR 135 (3), V (3), 39.5 (2) = 19, high
    (
        dict(
            respiration=26,
            spo2=90,
            oxygen=True,
            systolic=88,
            pulse=135,
            consciousness="V",
            temperature=39.5,
        ),
        False,
        19,
        "high",
    ),
    # Scale 2, COPD with hypercapnia: RR 20 (0), SpO2 89 (0), O2 (2), SBP 120 (0), HR 88 (0),
    # A (0), 37.2 (0) = 2, low (on scale 1 SpO2 89 would add 3: 5, medium)
    (
        dict(
            respiration=20,
            spo2=89,
            oxygen=True,
            systolic=120,
            pulse=88,
            consciousness="A",
            temperature=37.2,
        ),
        True,
        2,
        "low",
    ),
    # Scale 2, over-oxygenated: RR 14 (0), SpO2 98 on O2 (3), O2 (2), SBP 115 (0), HR 70 (0),
    # A (0), 36.5 (0) = 5, medium
    (
        dict(
            respiration=14,
            spo2=98,
            oxygen=True,
            systolic=115,
            pulse=70,
            consciousness="A",
            temperature=36.5,
        ),
        True,
        5,
        "medium",
    ),
    # Scale 2 on air at 98 %: 0 for SpO2; RR 24 (2), SBP 100 (2), HR 111 (2), P (3), 35.0 (3)
    # = 12, high
    (
        dict(
            respiration=24,
            spo2=98,
            oxygen=False,
            systolic=100,
            pulse=111,
            consciousness="P",
            temperature=35.0,
        ),
        True,
        12,
        "high",
    ),
]


@pytest.mark.parametrize(("values", "scale2", "total", "risk"), WORKED)
def test_worked_cases(values: dict[str, object], scale2: bool, total: int, risk: str) -> None:
    score = news2(vitals(**values), scale2=scale2)
    assert (score.total, score.risk, score.partial) == (total, risk, False)
    assert score.scale == (2 if scale2 else 1)


def test_scale1_for_the_same_copd_values_scores_higher() -> None:
    values = vitals(
        respiration=20,
        spo2=89,
        oxygen=True,
        systolic=120,
        pulse=88,
        consciousness="A",
        temperature=37.2,
    )
    assert news2(values).total == 5  # SpO2 89 on scale 1 is 3 points, + 2 for oxygen


def test_missing_parameters_make_a_partial_score_never_a_silent_zero() -> None:
    score = news2(vitals(respiration=25, pulse=72))
    assert score.partial
    assert set(score.missing) == {"spo2", "oxygen", "systolic", "consciousness", "temperature"}
    assert score.points == {"respiration": 3, "pulse": 0}
    assert (score.total, score.risk) == (3, "low-medium")
    empty = news2({})
    assert empty.partial and len(empty.missing) == 7 and empty.points == {}


@pytest.mark.parametrize(
    ("values", "total", "risk"),
    [
        (dict(respiration=21, consciousness="A", systolic=101), 0, "negative"),
        (dict(respiration=22, consciousness="A", systolic=101), 1, "negative"),
        (dict(respiration=22, consciousness="A", systolic=100), 2, "positive"),
        (dict(respiration=12, consciousness="C", systolic=100), 2, "positive"),
        (dict(respiration=30, consciousness="U", systolic=80), 3, "positive"),
    ],
)
def test_qsofa(values: dict[str, object], total: int, risk: str) -> None:
    score = qsofa(vitals(**values))
    assert (score.total, score.risk, score.partial) == (total, risk, False)


def test_partial_qsofa() -> None:
    score = qsofa(vitals(respiration=25, systolic=95))
    assert (score.total, score.risk, score.missing) == (2, "positive", (codes.CONSCIOUSNESS,))
