"""System-level search (_type), meta parameters, compartment search and Patient/$everything
(http://hl7.org/fhir/R4/search.html#all, http://hl7.org/fhir/R4/compartmentdefinition.html,
http://hl7.org/fhir/R4/patient-operation-everything.html)."""

from __future__ import annotations

from typing import Any

import pytest

from fhirhub.fhir_store.errors import FhirError
from tests.fhir_store.search.query_fixtures import *  # noqa: F403
from tests.fhir_store.search.query_fixtures import Db, entry_ids


def clinic(db: Db) -> None:
    db.put(
        {"resourceType": "Organization", "id": "org", "name": "Acme"},
        {"resourceType": "Practitioner", "id": "dr", "name": [{"family": "House"}]},
        {"resourceType": "Location", "id": "ward", "name": "Ward 1"},
        {"resourceType": "Medication", "id": "med", "code": {"text": "aspirin"}},
        {
            "resourceType": "Patient",
            "id": "p1",
            "managingOrganization": {"reference": "Organization/org"},
            "meta": {
                "tag": [{"system": "urn:tags", "code": "vip"}],
                "profile": ["http://example.org/StructureDefinition/special-patient"],
                "security": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                        "code": "R",
                    }
                ],
                "source": "http://example.org/source#1",
            },
        },
        {
            "resourceType": "Patient",
            "id": "p2",
            "link": [{"other": {"reference": "Patient/p1"}, "type": "seealso"}],
        },
        {"resourceType": "Patient", "id": "p3"},
        {
            "resourceType": "Encounter",
            "id": "e1",
            "status": "finished",
            "class": {"code": "AMB"},
            "subject": {"reference": "Patient/p1"},
            "participant": [{"individual": {"reference": "Practitioner/dr"}}],
            "location": [{"location": {"reference": "Location/ward"}}],
        },
        {
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "Patient/p1"},
            "encounter": {"reference": "Encounter/e1"},
            "meta": {"tag": [{"system": "urn:tags", "code": "vip"}]},
        },
        {
            "resourceType": "Observation",
            "id": "o2",
            "status": "final",
            "code": {"text": "x"},
            "performer": [{"reference": "Patient/p1"}],
        },
        {
            "resourceType": "Observation",
            "id": "o3",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "Patient/p3"},
        },
        {
            "resourceType": "MedicationRequest",
            "id": "mr",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "Patient/p1"},
            "medicationReference": {"reference": "Medication/med"},
        },
        {
            "resourceType": "Observation",
            "id": "o4",
            "status": "final",
            "code": {"text": "x"},
            "focus": [{"reference": "Patient/p1"}],
        },
    )


def test_meta_parameters(db: Db) -> None:
    clinic(db)
    assert db.ids("Patient", "_tag=urn:tags|vip") == ["Patient/p1"]
    assert db.ids("Observation", "_tag=vip") == ["Observation/o1"]
    assert db.ids("Patient", "_profile=http://example.org/StructureDefinition/special-patient") == [
        "Patient/p1"
    ]
    assert db.ids("Patient", "_security=R") == ["Patient/p1"]
    assert db.ids("Patient", "_source=http://example.org/source#1") == ["Patient/p1"]
    assert db.ids("Patient", "_tag:missing=true") == ["Patient/p2", "Patient/p3"]


def test_system_level_search(db: Db) -> None:
    clinic(db)
    assert db.ids(None, "_tag=vip") == ["Observation/o1", "Patient/p1"]
    assert db.ids(None, "_type=Patient&_tag=vip") == ["Patient/p1"]
    assert db.ids(None, "_type=Organization,Location") == ["Location/ward", "Organization/org"]
    assert db.ids(None, "_id=dr,o3") == ["Observation/o3", "Practitioner/dr"]
    assert db.search(None, "_summary=count")["total"] == 13
    with pytest.raises(FhirError):
        db.search(None, "_type=Bogus")
    # a parameter not defined on every searched type is unknown
    bundle = db.search(None, "_type=Patient,Observation&gender=male")
    assert bundle["entry"][0]["search"]["mode"] == "outcome"
    with pytest.raises(FhirError):
        db.search(None, "_type=Patient,Observation&gender=male", strict=True)
    link = bundle["link"][0]["url"]
    assert link.startswith("http://hub.test/fhir?") and "_type=Patient%2CObservation" in link


def test_compartment_search(db: Db) -> None:
    clinic(db)
    # subject and performer are Observation's compartment params, focus is not
    assert db.ids("Observation", "", compartment=("Patient", "p1")) == [
        "Observation/o1",
        "Observation/o2",
    ]
    assert db.ids("Observation", "status=final&_id=o2", compartment=("Patient", "p1")) == [
        "Observation/o2"
    ]
    assert db.ids("Observation", "", compartment=("Patient", "p3")) == ["Observation/o3"]
    assert db.ids("Patient", "", compartment=("Patient", "p1")) == ["Patient/p1", "Patient/p2"]
    assert db.ids("Organization", "", compartment=("Patient", "p1")) == []
    assert db.ids(None, "", compartment=("Patient", "p1")) == [
        "Encounter/e1",
        "MedicationRequest/mr",
        "Observation/o1",
        "Observation/o2",
        "Patient/p1",
        "Patient/p2",
    ]
    assert db.ids(None, "_type=Encounter", compartment=("Patient", "p1")) == ["Encounter/e1"]
    bundle = db.search("Observation", "", compartment=("Patient", "p1"))
    assert bundle["link"][0]["url"].startswith("http://hub.test/fhir/Patient/p1/Observation?")
    with pytest.raises(FhirError):
        db.search("Observation", "", compartment=("Encounter", "e1"))


def everything_ids(bundle: dict[str, Any]) -> list[str]:
    return entry_ids(bundle)


def test_everything(db: Db) -> None:
    clinic(db)
    bundle = db.everything("p1")
    ids = everything_ids(bundle)
    assert ids[0] == "Patient/p1"
    assert sorted(ids) == [
        "Encounter/e1",
        "Location/ward",
        "Medication/med",
        "MedicationRequest/mr",
        "Observation/o1",
        "Observation/o2",
        "Organization/org",
        "Patient/p1",
        "Patient/p2",
        "Practitioner/dr",
    ]
    assert bundle["total"] == 10
    typed = db.everything("p1", "_type=Observation,Practitioner")
    assert sorted(everything_ids(typed)) == ["Observation/o1", "Observation/o2", "Practitioner/dr"]
    assert everything_ids(db.everything("p3")) == ["Patient/p3", "Observation/o3"]


def test_everything_paging_and_since(db: Db) -> None:
    clinic(db)
    first = db.everything("p1", "_count=4")
    assert len(everything_ids(first)) == 4 and first["total"] == 10
    seen = list(everything_ids(first))
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    query = next_url.split("?", 1)[1]
    while True:
        page = db.everything("p1", query)
        seen.extend(everything_ids(page))
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not nxt:
            break
        query = nxt[0].split("?", 1)[1]
    assert len(seen) == 10 and len(set(seen)) == 10
    db.put(
        {
            "resourceType": "Observation",
            "id": "late",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "Patient/p1"},
        },
        last_updated=4_102_444_800_000_000,
    )
    assert everything_ids(db.everything("p1", "_since=2099-01-01")) == ["Observation/late"]
    with pytest.raises(FhirError):
        db.everything("p1", "bogus=1")
