"""Shared normalisation: string folding, date periods and number precision ranges."""

from __future__ import annotations

import pytest

from fhirhub.fhir_store.search.normalize import (
    MAX_INSTANT,
    date_range,
    fold_string,
    micros_to_instant,
    number_range,
)


def test_fold_string() -> None:
    assert fold_string("  Évêque  DE\tStraße ") == "eveque de strasse"
    assert fold_string("Zoë") == fold_string("ZOE") == "zoe"
    assert fold_string("plain") == "plain"


def span(value: str) -> tuple[str, str]:
    period = date_range(value)
    assert period is not None
    return micros_to_instant(period[0]), micros_to_instant(period[1])


@pytest.mark.parametrize(
    ("value", "low", "high"),
    [
        ("2020", "2020-01-01T00:00:00.000000Z", "2020-12-31T23:59:59.999999Z"),
        ("2020-02", "2020-02-01T00:00:00.000000Z", "2020-02-29T23:59:59.999999Z"),
        ("2021-02", "2021-02-01T00:00:00.000000Z", "2021-02-28T23:59:59.999999Z"),
        ("2020-12-31", "2020-12-31T00:00:00.000000Z", "2020-12-31T23:59:59.999999Z"),
        ("2020-03-04T10:00", "2020-03-04T10:00:00.000000Z", "2020-03-04T10:00:59.999999Z"),
        ("2020-03-04T10:00:00", "2020-03-04T10:00:00.000000Z", "2020-03-04T10:00:00.999999Z"),
        ("2020-03-04T10:00:00Z", "2020-03-04T10:00:00.000000Z", "2020-03-04T10:00:00.999999Z"),
        (
            "2020-03-04T10:00:00.25+01:00",
            "2020-03-04T09:00:00.250000Z",
            "2020-03-04T09:00:00.259999Z",
        ),
        ("2020-03-04T00:30:00-05:00", "2020-03-04T05:30:00.000000Z", "2020-03-04T05:30:00.999999Z"),
        ("1969-12-31", "1969-12-31T00:00:00.000000Z", "1969-12-31T23:59:59.999999Z"),
        ("9999", "9999-01-01T00:00:00.000000Z", "9999-12-31T23:59:59.999999Z"),
    ],
)
def test_date_range(value: str, low: str, high: str) -> None:
    assert span(value) == (low, high)


def test_date_range_bounds_and_invalid() -> None:
    assert (date_range("9999") or (0, 0))[1] == MAX_INSTANT
    assert date_range("1970-01-01T00:00:00Z") == (0, 999_999)
    for bad in ("", "x", "2021-02-30", "2020-13", "20200101", "2020-01-01T25:00:00Z", "0000"):
        assert date_range(bad) is None, bad


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100", (100.0, 99.5, 100.5)),
        ("100.00", (100.0, 99.995, 100.005)),
        ("1e2", (100.0, 50.0, 150.0)),
        ("1.00e2", (100.0, 99.5, 100.5)),
        ("0.1", (0.1, 0.05, 0.15)),
        ("-5.5", (-5.5, -5.55, -5.45)),
        (3, (3.0, 2.5, 3.5)),
        (7.2, (7.2, 7.15, 7.25)),
    ],
)
def test_number_range(text: str | float, expected: tuple[float, float, float]) -> None:
    assert number_range(text) == pytest.approx(expected)


def test_number_range_rejects_non_numbers() -> None:
    for bad in ("abc", "", "NaN", "Infinity"):
        with pytest.raises(ValueError):
            number_range(bad)
    with pytest.raises(ValueError):
        number_range(True)
