"""Date, number, quantity, uri and composite search with prefixes
(http://hl7.org/fhir/R4/search.html#date, #number, #quantity, #uri, #composite)."""

from __future__ import annotations

import pytest

from fhirhub.fhir_store.errors import FhirError
from tests.fhir_store.search.query_fixtures import *  # noqa: F403
from tests.fhir_store.search.query_fixtures import Db


def observations(db: Db) -> None:
    def obs(oid: str, when: object, value: float | None, **extra: object) -> dict[str, object]:
        resource: dict[str, object] = {
            "resourceType": "Observation",
            "id": oid,
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        }
        if isinstance(when, dict):
            resource["effectivePeriod"] = when
        else:
            resource["effectiveDateTime"] = when
        if value is not None:
            resource["valueQuantity"] = {
                "value": value,
                "unit": "beats/min",
                "system": "http://unitsofmeasure.org",
                "code": "/min",
            }
        resource.update(extra)
        return resource

    db.put(
        obs("o2019", "2019-06-15", 60),
        obs("o2020a", "2020-01-01T10:00:00Z", 72.5),
        obs("o2020b", "2020-12-31T23:00:00Z", 100),
        obs("o2021", "2021-03", 120),
        obs("oper", {"start": "2019-12-30", "end": "2020-01-02"}, None),
        obs("oopen", {"start": "2022-01-01"}, None),
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("date=2020", ["o2020a", "o2020b"]),
        ("date=eq2020", ["o2020a", "o2020b"]),
        ("date=2020-01-01", ["o2020a"]),
        ("date=ne2020", ["o2019", "o2021", "oopen", "oper"]),
        ("date=gt2020", ["o2021", "oopen"]),
        ("date=ge2020", ["o2020a", "o2020b", "o2021", "oopen"]),
        ("date=lt2020", ["o2019", "oper"]),
        ("date=le2020", ["o2019", "o2020a", "o2020b", "oper"]),
        ("date=sa2020", ["o2021", "oopen"]),
        ("date=eb2020", ["o2019"]),
        ("date=gt2020-12-31T22:00:00Z", ["o2020b", "o2021", "oopen"]),
        ("date=lt2020-01-01T10:00:00%2B01:00", ["o2019", "oper"]),
        ("date=ge2020-01-01&date=lt2021", ["o2020a", "o2020b", "oper"]),
        ("date=2019,2021", ["o2019", "o2021"]),
        ("date=ap2020-01-01", ["o2020a", "oper"]),
        ("date=gt2030", ["oopen"]),
    ],
)
def test_date_prefixes(db: Db, query: str, expected: list[str]) -> None:
    observations(db)
    if query == "date=ap2020-01-01":
        # ap: within 10% of the gap to now on each side; "now" (2026 or later) is 7+ years
        # away, so the window is 250+ days wide: June 2019 is in it, 2022 (oopen) is not.
        got = db.ids("Observation", query)
        assert {"Observation/o2019", "Observation/o2020a", "Observation/oper"} <= set(got)
        assert "Observation/oopen" not in got and "Observation/o2020b" not in got
        return
    query = query.replace("%2B", "+")
    assert db.ids("Observation", query) == [f"Observation/{i}" for i in expected]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("value-quantity=100", ["o2020b"]),
        ("value-quantity=72.5", ["o2020a"]),
        ("value-quantity=72", []),
        ("value-quantity=gt72", ["o2020a", "o2020b", "o2021"]),
        ("value-quantity=ge100", ["o2020b", "o2021"]),
        ("value-quantity=lt100", ["o2019", "o2020a"]),
        ("value-quantity=le100", ["o2019", "o2020a", "o2020b"]),
        ("value-quantity=ne100", ["o2019", "o2020a", "o2021"]),
        ("value-quantity=ap110", ["o2020b", "o2021"]),
        ("value-quantity=1.00e2", ["o2020b"]),
        ("value-quantity=1e2", ["o2019", "o2020a", "o2020b", "o2021"]),
        ("value-quantity=100|http://unitsofmeasure.org|/min", ["o2020b"]),
        ("value-quantity=100||beats/min", ["o2020b"]),
        ("value-quantity=100||/min", ["o2020b"]),
        ("value-quantity=100|http://unitsofmeasure.org|mg", []),
        ("value-quantity=gt50|http://other|/min", []),
    ],
)
def test_quantity_prefixes_and_units(db: Db, query: str, expected: list[str]) -> None:
    observations(db)
    assert db.ids("Observation", query) == [f"Observation/{i}" for i in expected]


def test_number(db: Db) -> None:
    db.put(
        {
            "resourceType": "RiskAssessment",
            "id": "r1",
            "status": "final",
            "subject": {"reference": "Patient/x"},
            "prediction": [{"probabilityDecimal": 0.2}],
        },
        {
            "resourceType": "RiskAssessment",
            "id": "r2",
            "status": "final",
            "subject": {"reference": "Patient/x"},
            "prediction": [{"probabilityDecimal": 0.85}],
        },
    )
    assert db.ids("RiskAssessment", "probability=0.2") == ["RiskAssessment/r1"]
    assert db.ids("RiskAssessment", "probability=gt0.5") == ["RiskAssessment/r2"]
    assert db.ids("RiskAssessment", "probability=le0.85") == [
        "RiskAssessment/r1",
        "RiskAssessment/r2",
    ]
    assert db.ids("RiskAssessment", "probability=0.8") == []


def test_uri_exact_below_above(db: Db) -> None:
    db.put(
        {
            "resourceType": "ValueSet",
            "id": "v1",
            "status": "active",
            "url": "http://acme.org/fhir/ValueSet/123",
        },
        {
            "resourceType": "ValueSet",
            "id": "v2",
            "status": "active",
            "url": "http://acme.org/fhir/ValueSet/124",
        },
        {
            "resourceType": "ValueSet",
            "id": "v3",
            "status": "active",
            "url": "http://other.org/fhir",
        },
    )
    assert db.ids("ValueSet", "url=http://acme.org/fhir/ValueSet/123") == ["ValueSet/v1"]
    assert db.ids("ValueSet", "url=http://acme.org/fhir/ValueSet") == []
    assert db.ids("ValueSet", "url:below=http://acme.org/fhir/") == ["ValueSet/v1", "ValueSet/v2"]
    assert db.ids("ValueSet", "url:above=http://other.org/fhir/ValueSet/1/2") == ["ValueSet/v3"]


def test_composite(db: Db) -> None:
    def bp(oid: str, systolic: float, diastolic: float) -> dict[str, object]:
        def comp(code: str, value: float) -> dict[str, object]:
            return {
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "valueQuantity": {
                    "value": value,
                    "system": "http://unitsofmeasure.org",
                    "code": "mm[Hg]",
                },
            }

        return {
            "resourceType": "Observation",
            "id": oid,
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "component": [comp("8480-6", systolic), comp("8462-4", diastolic)],
        }

    db.put(bp("bp1", 120, 80), bp("bp2", 150, 95), bp("bp3", 105, 120))
    assert db.ids("Observation", "component-code-value-quantity=http://loinc.org|8480-6$gt130") == [
        "Observation/bp2"
    ]
    # Both parts must come from the same component: bp3 has 120 only as its diastolic.
    assert db.ids("Observation", "component-code-value-quantity=8480-6$ge120") == [
        "Observation/bp1",
        "Observation/bp2",
    ]
    assert db.ids("Observation", "component-code-value-quantity=8462-4$lt90,8480-6$gt140") == [
        "Observation/bp1",
        "Observation/bp2",
    ]
    assert db.ids("Observation", "component-code-value-quantity=8480-6$gt200") == []
    both = "component-code-value-quantity=8480-6$gt100&component-code-value-quantity=8462-4$gt90"
    assert db.ids("Observation", both) == ["Observation/bp2", "Observation/bp3"]
    with pytest.raises(FhirError):
        db.search("Observation", "component-code-value-quantity=8480-6")


def test_last_updated(db: Db) -> None:
    db.put(
        {"resourceType": "Patient", "id": "old"}, last_updated=1_577_836_800_000_000
    )  # 2020-01-01
    db.put(
        {"resourceType": "Patient", "id": "new"}, last_updated=1_609_459_200_000_000
    )  # 2021-01-01
    assert db.ids("Patient", "_lastUpdated=gt2020-06-01") == ["Patient/new"]
    assert db.ids("Patient", "_lastUpdated=2020") == ["Patient/old"]
    assert db.ids("Patient", "_lastUpdated=le2021-01-01T00:00:00Z") == [
        "Patient/new",
        "Patient/old",
    ]


@pytest.mark.parametrize(
    "query", ["date=xx2020", "date=2020-13", "date=gt", "value-quantity=abc", "value-quantity=1|2"]
)
def test_bad_values(db: Db, query: str) -> None:
    with pytest.raises(FhirError) as error:
        db.search("Observation", query)
    assert error.value.status == 400
