"""The official Python FHIR clients work against a running hub: fhirpy and fhirclient
(create, read, search, chained search, paging)."""

from __future__ import annotations

import pytest
from fhirpy import SyncFHIRClient

from tests.conftest import LiveServer

pytestmark = pytest.mark.slow


def test_fhirpy_create_search_chain_and_page(live_server: LiveServer) -> None:
    client = SyncFHIRClient(live_server.fhir)
    patients = []
    for index in range(7):
        patient = client.resource(
            "Patient",
            name=[{"family": "Fhirpy", "given": [f"Given{index}"]}],
            identifier=[{"system": "urn:test", "value": f"fp-{index}"}],
            gender="female",
            birthDate=f"198{index}-01-01",
        )
        patient.save()
        patients.append(patient)
    observation = client.resource(
        "Observation",
        status="final",
        code={"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        subject=patients[0].to_reference(),
        valueQuantity={"value": 61, "unit": "/min"},
    )
    observation.save()

    assert client.resources("Patient").search(family="fhirpy").count() == 7
    found = client.resources("Patient").search(identifier="urn:test|fp-3").first()
    assert found is not None and found["id"] == patients[3]["id"]
    chained = (
        client.resources("Observation").search(subject__Patient__identifier="urn:test|fp-0").fetch()
    )
    assert [o["id"] for o in chained] == [observation["id"]]
    everyone = client.resources("Patient").search(family="fhirpy").limit(2).fetch_all()
    assert sorted(p["id"] for p in everyone) == sorted(p["id"] for p in patients)
    ordered = (
        client.resources("Patient").search(family="fhirpy").sort("-birthdate").limit(3).fetch()
    )
    assert [p["birthDate"] for p in ordered] == ["1986-01-01", "1985-01-01", "1984-01-01"]
    read_back = client.reference("Patient", patients[1]["id"]).to_resource()
    assert read_back["name"][0]["given"] == ["Given1"]


def test_fhirclient_reads_metadata_creates_and_searches(live_server: LiveServer) -> None:
    from fhirclient import client as smart_client
    from fhirclient.models import humanname
    from fhirclient.models import patient as patient_model

    smart = smart_client.FHIRClient(
        settings={"app_id": "fhirhub-test", "api_base": live_server.fhir}
    )
    smart.prepare()  # fetches and parses our CapabilityStatement with the client's R4 models
    assert smart.server.capabilityStatement.fhirVersion == "4.0.1"

    patient = patient_model.Patient()
    name = humanname.HumanName()
    name.family = "Fhirclient"
    name.given = ["Ada"]
    patient.name = [name]
    patient.gender = "female"
    created = patient.create(smart.server)
    assert created is not None
    results = patient_model.Patient.where(struct={"family": "fhirclient"}).perform_resources(
        smart.server
    )
    assert len(results) == 1 and results[0].name[0].given == ["Ada"]
    read_back = patient_model.Patient.read(results[0].id, smart.server)
    assert read_back.gender == "female"
