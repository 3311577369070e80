"""Reference search, chaining, reverse chaining, _include and _revinclude
(http://hl7.org/fhir/R4/search.html#reference, #chaining, #has, #include, #revinclude)."""

from __future__ import annotations

import pytest

from fhirhub.fhir_store.errors import FhirError
from tests.fhir_store.search.query_fixtures import *  # noqa: F403
from tests.fhir_store.search.query_fixtures import BASE, Db, entry_ids


def world(db: Db) -> None:
    db.put(
        {"resourceType": "Organization", "id": "org1", "name": "Acme Hospital"},
        {
            "resourceType": "Organization",
            "id": "org2",
            "name": "Other Clinic",
            "partOf": {"reference": "Organization/org1"},
        },
        {"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "House"}]},
        {
            "resourceType": "Patient",
            "id": "peter",
            "name": [{"family": "Parker", "given": ["Peter"]}],
            "managingOrganization": {"reference": "Organization/org1"},
            "generalPractitioner": [{"reference": "Practitioner/dr1"}],
            "identifier": [{"system": "urn:mrn", "value": "111"}],
        },
        {
            "resourceType": "Patient",
            "id": "mary",
            "name": [{"family": "Jane", "given": ["Mary"]}],
            "managingOrganization": {"reference": "Organization/org2"},
        },
        {"resourceType": "Location", "id": "loc1", "name": "Peterborough clinic"},
        {
            "resourceType": "Encounter",
            "id": "e1",
            "status": "finished",
            "class": {"code": "AMB"},
            "subject": {"reference": "Patient/peter"},
        },
        {
            "resourceType": "Encounter",
            "id": "e2",
            "status": "finished",
            "class": {"code": "AMB"},
            "subject": {"reference": "Patient/mary"},
        },
        {
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "1234-5"}]},
            "subject": {"reference": "Patient/peter"},
            "encounter": {"reference": "Encounter/e1"},
            "performer": [{"reference": "Practitioner/dr1"}],
        },
        {
            "resourceType": "Observation",
            "id": "o2",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "9999-9"}]},
            "subject": {"reference": "Patient/mary"},
            "encounter": {"reference": "Encounter/e2"},
        },
        {
            "resourceType": "Observation",
            "id": "o3",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "1234-5"}]},
            "subject": {"reference": "Location/loc1"},
        },
        {
            "resourceType": "Observation",
            "id": "o4",
            "status": "final",
            "code": {"coding": [{"code": "x"}]},
            "subject": {"reference": "http://elsewhere.org/fhir/Patient/77"},
        },
        {
            "resourceType": "Provenance",
            "id": "prov1",
            "recorded": "2020-01-01T00:00:00Z",
            "target": [{"reference": "Observation/o1"}],
            "agent": [{"who": {"reference": "Practitioner/dr1"}}],
        },
    )


def test_reference_forms(db: Db) -> None:
    world(db)
    assert db.ids("Observation", "subject=Patient/peter") == ["Observation/o1"]
    assert db.ids("Observation", "subject=peter") == ["Observation/o1"]
    assert db.ids("Observation", "patient=peter") == ["Observation/o1"]
    assert db.ids("Observation", "subject:Patient=peter") == ["Observation/o1"]
    assert db.ids("Observation", "subject:Location=peter") == []
    assert db.ids("Observation", f"subject={BASE}/Patient/mary") == ["Observation/o2"]
    assert db.ids("Observation", "subject=http://elsewhere.org/fhir/Patient/77") == [
        "Observation/o4"
    ]
    assert db.ids("Observation", "subject=Patient/peter,Location/loc1") == [
        "Observation/o1",
        "Observation/o3",
    ]
    assert db.ids("Observation", "subject=Patient/peter/_history/3") == ["Observation/o1"]
    assert db.ids("Observation", "encounter:missing=true") == ["Observation/o3", "Observation/o4"]
    with pytest.raises(FhirError):
        db.search("Observation", "subject:Bogus=1")


def test_several_reference_values(db: Db) -> None:
    """Several values of one reference parameter (grouped into one IN per type): every form
    still matches what it matches alone, and a value of another type matches nothing."""
    world(db)
    assert db.ids("Observation", "subject=Patient/peter,Patient/mary") == [
        "Observation/o1",
        "Observation/o2",
    ]
    assert db.ids(
        "Observation",
        f"subject=peter,{BASE}/Patient/mary,Location/loc1,http://elsewhere.org/fhir/Patient/77",
    ) == ["Observation/o1", "Observation/o2", "Observation/o3", "Observation/o4"]
    assert db.ids("Observation", "subject:Patient=peter,Location/loc1,mary") == [
        "Observation/o1",
        "Observation/o2",
    ]
    assert db.ids("Observation", "subject=Patient/nobody,Patient/peter/_history/3") == [
        "Observation/o1"
    ]
    many = ",".join(f"Patient/p{i}" for i in range(98))
    assert db.ids("Observation", f"subject={many},Patient/mary") == ["Observation/o2"]
    assert db.ids("Encounter", "patient=peter,mary") == ["Encounter/e1", "Encounter/e2"]
    with pytest.raises(FhirError):
        db.search("Observation", "subject=Patient/peter,a/b/c")


def test_reference_identifier(db: Db) -> None:
    world(db)
    assert db.ids("Observation", "subject:identifier=urn:mrn|111") == ["Observation/o1"]
    assert db.ids("Observation", "subject:identifier=urn:mrn|222") == []


def test_chaining(db: Db) -> None:
    world(db)
    assert db.ids("Observation", "subject:Patient.name=peter") == ["Observation/o1"]
    # Ambiguous target: every target type that has `name` (Patient and Location here).
    assert db.ids("Observation", "subject.name=peter") == ["Observation/o1", "Observation/o3"]
    assert db.ids("Observation", "patient.name=mary") == ["Observation/o2"]
    assert db.ids("Observation", "encounter.subject.name=jane") == ["Observation/o2"]
    assert db.ids("Observation", "subject:Patient.organization.name=acme") == ["Observation/o1"]
    assert db.ids("Observation", "subject:Patient.organization.partof.name=acme") == [
        "Observation/o2"
    ]
    assert db.ids("Observation", "subject:Patient.name=peter&code=9999-9") == []
    assert db.ids("Observation", "subject:Patient.gender:missing=true") == [
        "Observation/o1",
        "Observation/o2",
    ]
    with pytest.raises(FhirError):
        db.search("Observation", "code.name=x")


def test_chain_unknown_parameter_is_reported(db: Db) -> None:
    world(db)
    bundle = db.search("Observation", "subject.bogus=1")
    assert [e["search"]["mode"] for e in bundle["entry"]][0] == "outcome"
    assert bundle["total"] == 4


def test_reverse_chaining(db: Db) -> None:
    world(db)
    assert db.ids("Patient", "_has:Observation:patient:code=1234-5") == ["Patient/peter"]
    assert db.ids("Patient", "_has:Observation:subject:code=9999-9,1234-5") == [
        "Patient/mary",
        "Patient/peter",
    ]
    assert db.ids("Encounter", "_has:Observation:encounter:code=9999-9") == ["Encounter/e2"]
    # nested: patients with an observation that has a provenance recorded by dr1
    assert db.ids(
        "Patient", "_has:Observation:patient:_has:Provenance:target:agent=Practitioner/dr1"
    ) == ["Patient/peter"]
    assert db.ids("Practitioner", "_has:Observation:performer:subject.name=peter") == [
        "Practitioner/dr1"
    ]
    with pytest.raises(FhirError):
        db.search("Patient", "_has:Observation:code:code=1")
    with pytest.raises(FhirError):
        db.search("Patient", "_has:Observation=1")


def test_include(db: Db) -> None:
    world(db)
    bundle = db.search("Observation", "code=1234-5&_include=Observation:subject")
    assert sorted(entry_ids(bundle)) == ["Observation/o1", "Observation/o3"]
    assert sorted(entry_ids(bundle, "include")) == ["Location/loc1", "Patient/peter"]
    assert bundle["total"] == 2
    only_patients = db.search("Observation", "code=1234-5&_include=Observation:subject:Patient")
    assert entry_ids(only_patients, "include") == ["Patient/peter"]
    everything = db.search("Observation", "_id=o1&_include=Observation:*")
    assert sorted(entry_ids(everything, "include")) == [
        "Encounter/e1",
        "Patient/peter",
        "Practitioner/dr1",
    ]
    several = db.search(
        "Observation",
        [("_id", "o1"), ("_include", "Observation:subject"), ("_include", "Observation:performer")],
    )
    assert sorted(entry_ids(several, "include")) == ["Patient/peter", "Practitioner/dr1"]


def test_include_iterate_and_no_duplicates(db: Db) -> None:
    world(db)
    plain = db.search(
        "Observation", "_id=o1,o2&_include=Observation:subject&_include=Patient:organization"
    )
    # without :iterate, Patient:organization applies to the matches only (Observations)
    assert sorted(entry_ids(plain, "include")) == ["Patient/mary", "Patient/peter"]
    iterated = db.search(
        "Observation",
        "_id=o1,o2&_include=Observation:subject&_include:iterate=Patient:organization"
        "&_include:iterate=Organization:partof",
    )
    included = entry_ids(iterated, "include")
    assert sorted(included) == [
        "Organization/org1",
        "Organization/org2",
        "Patient/mary",
        "Patient/peter",
    ]
    assert len(included) == len(set(included))
    # a match that is also a target is not repeated as an include
    mixed = db.search("Organization", "_id=org1,org2&_include=Organization:partof")
    assert sorted(entry_ids(mixed)) == ["Organization/org1", "Organization/org2"]
    assert entry_ids(mixed, "include") == []


def test_revinclude(db: Db) -> None:
    world(db)
    bundle = db.search("Patient", "_id=peter&_revinclude=Observation:subject")
    assert entry_ids(bundle) == ["Patient/peter"]
    assert entry_ids(bundle, "include") == ["Observation/o1"]
    chained = db.search(
        "Patient",
        "_id=peter&_revinclude=Observation:subject&_revinclude:iterate=Provenance:target",
    )
    assert sorted(entry_ids(chained, "include")) == ["Observation/o1", "Provenance/prov1"]
    star = db.search("Patient", "_id=peter&_revinclude=Encounter:*")
    assert entry_ids(star, "include") == ["Encounter/e1"]


@pytest.mark.parametrize(
    "include", ["Observation", "Observation:bogus", "Bogus:subject", "Observation:code"]
)
def test_bad_include(db: Db, include: str) -> None:
    with pytest.raises(FhirError) as error:
        db.search("Observation", f"_include={include}")
    assert error.value.status == 400
