"""Edge cases: unsupported parameters and modifiers, sorting by quantity and reference,
chained _id, escaping in composite values."""

from __future__ import annotations

import pytest

from fhirhub.fhir_store.errors import FhirError
from tests.fhir_store.search.query_fixtures import *  # noqa: F403
from tests.fhir_store.search.query_fixtures import Db


def obs(oid: str, value: float, subject: str) -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": subject},
        "valueQuantity": {"value": value, "system": "http://unitsofmeasure.org", "code": "kg"},
    }


def test_sort_by_quantity_and_reference(db: Db) -> None:
    db.put(obs("a", 80, "Patient/z"), obs("b", 60.5, "Patient/x"), obs("c", 99, "Patient/y"))
    ids = [e["resource"]["id"] for e in db.search("Observation", "_sort=value-quantity")["entry"]]
    assert ids == ["b", "a", "c"]
    ids = [e["resource"]["id"] for e in db.search("Observation", "_sort=-subject")["entry"]]
    assert ids == ["a", "c", "b"]


def test_chained_id(db: Db) -> None:
    db.put(
        obs("a", 80, "Patient/z"),
        obs("b", 60.5, "Patient/x"),
        {"resourceType": "Patient", "id": "x"},
    )
    assert db.ids("Observation", "subject:Patient._id=x") == ["Observation/b"]
    # z does not exist: a chain needs the target resource
    assert db.ids("Observation", "subject:Patient._id=z") == []
    assert db.ids("Observation", "subject=Patient/z") == ["Observation/a"]


def test_special_parameters_are_unsupported(db: Db) -> None:
    db.put(obs("a", 80, "Patient/z"))
    bundle = db.search("Observation", "_content=kg&_contained=true")
    warnings = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    texts = " ".join(i["diagnostics"] for i in warnings[0]["resource"]["issue"])
    assert "_content" in texts and "_contained" in texts
    assert bundle["total"] == 1
    for query in ("_content=kg", "_contained=true"):
        with pytest.raises(FhirError) as error:
            db.search("Observation", query, strict=True)
        assert error.value.status == 400


@pytest.mark.parametrize(
    "query",
    [
        "code:of-type=a|b|c",
        "code:not-in=http://vs",
        "code:below=x",
        "subject:not=Patient/z",
        "value-quantity:exact=1",
        "_lastUpdated:missing=true",
        "_has:Bogus:subject:code=1",
        "_sort=subject.name",
    ],
)
def test_unsupported_modifiers_are_400(db: Db, query: str) -> None:
    with pytest.raises(FhirError) as error:
        db.search("Observation", query)
    assert error.value.status == 400


def test_escaped_separators_in_values(db: Db) -> None:
    db.put(
        {
            "resourceType": "Patient",
            "id": "p",
            "identifier": [{"system": "urn:s", "value": "a$b,c|d"}],
        },
        {"resourceType": "Patient", "id": "q", "identifier": [{"system": "urn:s", "value": "a"}]},
    )
    assert db.ids("Patient", "identifier=urn:s|a$b\\,c\\|d") == ["Patient/p"]
    assert db.ids("Patient", "identifier=urn:s|a,urn:s|zzz") == ["Patient/q"]


def test_unknown_type_is_404(db: Db) -> None:
    with pytest.raises(FhirError) as error:
        db.search("Bogus", "")
    assert error.value.status == 404
