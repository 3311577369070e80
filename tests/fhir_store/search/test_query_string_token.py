"""String and token search, _id, OR/AND and escaping (http://hl7.org/fhir/R4/search.html)."""

from __future__ import annotations

import pytest

from fhirhub.fhir_store.errors import FhirError
from tests.fhir_store.search.query_fixtures import *  # noqa: F403
from tests.fhir_store.search.query_fixtures import Db


def patients(db: Db) -> None:
    db.put(
        {
            "resourceType": "Patient",
            "id": "p1",
            "name": [{"family": "Évêque", "given": ["Peter", "James"]}],
            "gender": "male",
            "identifier": [{"system": "urn:mrn", "value": "A,1"}],
            "active": True,
        },
        {
            "resourceType": "Patient",
            "id": "p2",
            "name": [{"family": "Chalmers", "given": ["Petra"]}],
            "gender": "female",
            "identifier": [{"system": "urn:other", "value": "A,1"}, {"value": "X|2"}],
        },
        {
            "resourceType": "Patient",
            "id": "p3",
            "name": [{"family": "Smith", "given": ["John"], "text": "John Smith"}],
            "gender": "male",
            "active": False,
        },
    )


def test_string_default_is_folded_starts_with(db: Db) -> None:
    patients(db)
    assert db.ids("Patient", "name=pet") == ["Patient/p1", "Patient/p2"]
    assert db.ids("Patient", "family=eveque") == ["Patient/p1"]
    assert db.ids("Patient", "family=EVÊ") == ["Patient/p1"]
    assert db.ids("Patient", "name=ete") == []


def test_string_exact_and_contains(db: Db) -> None:
    patients(db)
    assert db.ids("Patient", "family:exact=Évêque") == ["Patient/p1"]
    assert db.ids("Patient", "family:exact=eveque") == []
    assert db.ids("Patient", "name:contains=ALM") == ["Patient/p2"]
    assert db.ids("Patient", "name:contains=e") == ["Patient/p1", "Patient/p2"]
    assert db.ids("Patient", "name:contains=100%") == []


def test_or_and_and(db: Db) -> None:
    patients(db)
    assert db.ids("Patient", "given=john,petra") == ["Patient/p2", "Patient/p3"]
    assert db.ids("Patient", "given=pe&gender=female") == ["Patient/p2"]
    assert db.ids("Patient", "given=pe&given=james") == ["Patient/p1"]


def test_token_forms(db: Db) -> None:
    patients(db)
    assert db.ids("Patient", "gender=male") == ["Patient/p1", "Patient/p3"]
    assert db.ids("Patient", "identifier=urn:mrn|A\\,1") == ["Patient/p1"]
    assert db.ids("Patient", "identifier=A\\,1") == ["Patient/p1", "Patient/p2"]
    assert db.ids("Patient", "identifier=urn:other|") == ["Patient/p2"]
    assert db.ids("Patient", "identifier=|X\\|2") == ["Patient/p2"]
    assert db.ids("Patient", "identifier=|A\\,1") == []
    assert db.ids("Patient", "active=true") == ["Patient/p1"]
    assert db.ids("Patient", "active=false") == ["Patient/p3"]


def test_token_not_includes_resources_without_value(db: Db) -> None:
    patients(db)
    assert db.ids("Patient", "active:not=true") == ["Patient/p2", "Patient/p3"]
    assert db.ids("Patient", "gender:not=male") == ["Patient/p2"]


def test_token_text(db: Db) -> None:
    db.put(
        {
            "resourceType": "Condition",
            "id": "c1",
            "subject": {"reference": "Patient/p1"},
            "code": {
                "coding": [{"system": "http://snomed.info/sct", "code": "44054006"}],
                "text": "Diabetes mellitus type 2",
            },
        },
        {
            "resourceType": "Condition",
            "id": "c2",
            "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"code": "x", "display": "Acute bronchitis"}]},
        },
    )
    assert db.ids("Condition", "code:text=diabetes") == ["Condition/c1"]
    assert db.ids("Condition", "code:text=mellitus") == ["Condition/c1"]
    assert db.ids("Condition", "code:text=BRONCH") == ["Condition/c2"]
    assert db.ids("Condition", "code=http://snomed.info/sct|44054006") == ["Condition/c1"]


def test_missing(db: Db) -> None:
    patients(db)
    assert db.ids("Patient", "active:missing=true") == ["Patient/p2"]
    assert db.ids("Patient", "active:missing=false") == ["Patient/p1", "Patient/p3"]
    assert db.ids("Patient", "birthdate:missing=true") == ["Patient/p1", "Patient/p2", "Patient/p3"]


def test_id_and_deleted(db: Db) -> None:
    patients(db)
    assert db.ids("Patient", "_id=p1,p3") == ["Patient/p1", "Patient/p3"]
    db.delete("Patient", "p3")
    assert db.ids("Patient", "_id=p1,p3") == ["Patient/p1"]
    assert db.ids("Patient", "gender=male") == ["Patient/p1"]
    assert db.search("Patient")["total"] == 2


@pytest.mark.parametrize(
    "query",
    ["gender:bogus=male", "name:not=x", "code:in=http://vs", "_count=x", "_count=-1", "gender="],
)
def test_malformed_is_400(db: Db, query: str) -> None:
    with pytest.raises(FhirError) as error:
        db.search("Observation" if "code" in query else "Patient", query)
    assert error.value.status == 400


def test_unknown_parameter_lenient_and_strict(db: Db) -> None:
    patients(db)
    bundle = db.search("Patient", "bogus=1&gender=female")
    outcome = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert len(outcome) == 1
    issue = outcome[0]["resource"]["issue"][0]
    assert issue["severity"] == "warning" and "bogus" in issue["diagnostics"]
    assert [e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "match"] == [
        "p2"
    ]
    self_link = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert "bogus" not in self_link and "gender=female" in self_link
    with pytest.raises(FhirError) as error:
        db.search("Patient", "bogus=1", strict=True)
    assert error.value.status == 400
    assert "bogus" in error.value.message


def test_entries_are_stored_bytes(db: Db) -> None:
    patients(db)
    raw = db.raw("Patient", "_id=p2")
    assert b'"fullUrl":"http://hub.test/fhir/Patient/p2"' in raw
    assert b'"search":{"mode":"match"}' in raw
    bundle = db.search("Patient", "_id=p2")
    assert bundle["type"] == "searchset" and bundle["total"] == 1
    assert bundle["entry"][0]["resource"]["name"][0]["family"] == "Chalmers"


V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def test_identifier_of_type(db: Db) -> None:
    def typed(code: str) -> dict[str, object]:
        return {"coding": [{"system": V2, "code": code}]}

    db.put(
        {
            "resourceType": "Patient",
            "id": "mr",
            "identifier": [{"system": "urn:mrn", "value": "123", "type": typed("MR")}],
        },
        {
            "resourceType": "Patient",
            "id": "dl",
            "identifier": [
                {"system": "urn:dl", "value": "123", "type": typed("DL")},
                {"system": "urn:mrn", "value": "777", "type": typed("MR")},
            ],
        },
        {"resourceType": "Patient", "id": "untyped", "identifier": [{"value": "123"}]},
    )
    assert db.ids("Patient", f"identifier:of-type={V2}|MR|123") == ["Patient/mr"]
    assert db.ids("Patient", f"identifier:of-type={V2}|DL|123") == ["Patient/dl"]
    # The type and the value must be those of one identifier.
    assert db.ids("Patient", f"identifier:of-type={V2}|MR|777") == ["Patient/dl"]
    assert db.ids("Patient", f"identifier:of-type={V2}|DL|777") == []
    assert db.ids("Patient", "identifier:of-type=|MR|123") == ["Patient/mr"]  # any type system
    assert db.ids("Patient", f"identifier:of-type={V2}|MR|123,{V2}|DL|123") == [
        "Patient/dl",
        "Patient/mr",
    ]
    assert db.ids("Patient", f"identifier:of-type={V2}|MR|123&gender:missing=true") == [
        "Patient/mr"
    ]
    for query in (f"identifier:of-type={V2}|MR", "identifier:of-type=123", "gender:of-type=a|b|c"):
        with pytest.raises(FhirError) as error:
            db.search("Patient", query)
        assert error.value.status == 400
