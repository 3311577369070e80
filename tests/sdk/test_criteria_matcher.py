"""``criteria_matcher`` answers simple criteria in memory exactly as the SQL search does, and
declines (None) what needs SQL."""

from __future__ import annotations

from typing import Any

import pytest

from fhirhub.core.hub import Hub
from fhirhub.sdk import acting_as, criteria_matcher, index_rows, matching, system_for, transaction


def observation(code: str, system: str | None, value: float | None, **extra: Any) -> dict[str, Any]:
    coding: dict[str, Any] = {"code": code}
    if system is not None:
        coding["system"] = system
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": extra.pop("status", "final"),
        "code": {"coding": [coding]},
        **extra,
    }
    if value is not None:
        resource["valueQuantity"] = {
            "value": value,
            "unit": "mg/dL",
            "system": "http://unitsofmeasure.org",
            "code": "mg/dL",
        }
    return resource


RESOURCES = [
    observation("2339-0", "http://loinc.org", 150, subject={"reference": "Patient/p1"}),
    observation("2339-0", "http://loinc.org", 99.5, subject={"reference": "Patient/p2"}),
    observation("2339-0", None, 120),
    observation("8302-2", "http://loinc.org", None, status="amended"),
    observation("8302-2", "http://other.org", 80, category=[{"coding": [{"code": "vital-signs"}]}]),
    observation("x,y", "http://loinc.org", 100),
]

SIMPLE = [
    "",
    "code=http://loinc.org|2339-0",
    "code=2339-0",
    "code=|2339-0",
    "code=http://loinc.org|",
    "code=http://loinc.org|2339-0,http://other.org|8302-2",
    "code:not=http://loinc.org|2339-0",
    "code:not=2339-0&status=final",
    "code=x\\,y",
    "status=final,amended&code=8302-2",
    "value-quantity=gt100",
    "value-quantity=ge99.5&code=2339-0",
    "value-quantity=lt100",
    "value-quantity=100",
    "value-quantity=le150|http://unitsofmeasure.org|mg/dL",
    "value-quantity=gt10||mg/dL",
    "value-quantity=gt10|http://other|mg/dL",
    "value-quantity:missing=true",
    "value-quantity:missing=false&status=final",
    "category:missing=false",
    "subject=Patient/p1",
    "subject=p2",
    "subject=Patient/p1/_history/3",
    "patient=Patient/p1,Patient/p2",
]

NEEDS_SQL = [
    "subject:Patient.gender=female",
    "_has:Observation:patient:code=1234",
    "code:text=glucose",
    "subject=http://example.org/fhir/Patient/p1",
    "subject:Patient=p1",
    "date=ge2020",
    "_lastUpdated=gt2020",
    "status:missing=maybe",
    "value-quantity=gt",
]


@pytest.fixture
def stored(hub: Hub) -> list[dict[str, Any]]:
    out = []
    with acting_as(system_for(None)), transaction(hub) as tx:
        for patient in ("p1", "p2"):
            tx.update({"resourceType": "Patient", "id": patient})
        for resource in RESOURCES:
            result = tx.create(resource)
            out.append({**resource, "id": result.version.resource_id})
    return out


@pytest.mark.parametrize("criteria", SIMPLE)
def test_in_memory_answers_as_the_sql_search(
    hub: Hub, stored: list[dict[str, Any]], criteria: str
) -> None:
    matcher = criteria_matcher(hub, "Observation", criteria)
    assert matcher is not None, criteria
    ids = [r["id"] for r in stored]
    with acting_as(system_for(None)):
        expected = matching(hub, "Observation", criteria, ids)
    found = {r["id"] for r in stored if matcher.matches(r["id"], index_rows(hub, r))}
    assert found == expected, criteria


def test_only_the_parameters_read_are_needed(hub: Hub, stored: list[dict[str, Any]]) -> None:
    matcher = criteria_matcher(hub, "Observation", "code=2339-0&value-quantity=gt100")
    assert matcher is not None
    assert matcher.params == {"code", "value-quantity"}
    rows = index_rows(hub, stored[0], matcher.params)
    assert {row["param"] for kind in rows.values() for row in kind} == matcher.params
    assert matcher.matches(stored[0]["id"], rows)


@pytest.mark.parametrize("criteria", NEEDS_SQL)
def test_what_needs_sql_is_declined(hub: Hub, criteria: str) -> None:
    assert criteria_matcher(hub, "Observation", criteria) is None
