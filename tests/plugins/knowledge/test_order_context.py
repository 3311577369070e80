"""The order check's one-query read of the patient's record: the same context as the
type-by-type reads, other tenants' resources unseen, and the type-by-type reads again when
the one page is full."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub
from fhirhub.plugins.knowledge import orders
from fhirhub.plugins.knowledge.checks import PatientContext
from fhirhub.plugins.knowledge.context import read_context, read_context_at_once
from fhirhub.plugins.knowledge.service import service_of
from fhirhub.sdk import acting_as, snapshot, system_for
from tests.plugins.knowledge.conftest import CLINICAL, SNOMED, condition, order, patient, post


def record(client: TestClient, caller: str) -> str:
    """A patient with every type the check reads, active and inactive."""
    subject = patient(client, caller)
    condition(client, caller, subject, "195967001", "Asthma")
    resolved = condition(client, caller, subject, "38341003", "Hypertension")
    resolved["clinicalStatus"] = {"coding": [{"system": CLINICAL, "code": "resolved"}]}
    client.put(
        f"/fhir/Condition/{resolved['id']}", json=resolved, headers={"X-Test-Caller": caller}
    ).raise_for_status()
    post(
        client,
        caller,
        {
            "resourceType": "AllergyIntolerance",
            "patient": {"reference": subject},
            "code": {"coding": [{"system": SNOMED, "code": "91936005", "display": "Penicillin"}]},
        },
    )
    post(client, caller, order(subject, "Warfarin Sodium 5 MG Oral Tablet", "855332"))
    post(client, caller, order(subject, "Simvastatin 20 MG Oral Tablet", status="completed"))
    post(
        client,
        caller,
        {
            "resourceType": "MedicationStatement",
            "status": "active",
            "subject": {"reference": subject},
            "medicationCodeableConcept": {"text": "Aspirin 81 MG Oral Tablet"},
        },
    )
    return subject


def summary(context: PatientContext) -> tuple[list[tuple[str, frozenset[str]]], ...]:
    return tuple(
        [(item.reference, item.nodes) for item in items]
        for items in (context.medications, context.conditions, context.allergies)
    )


def contexts(hub: Hub, tenant: str, subject: str, page: int) -> tuple[PatientContext, ...]:
    graph = service_of(hub).index.graph()
    with acting_as(system_for(tenant)), snapshot(hub) as tx:
        return (
            read_context(graph, subject, tx.search, tx.read),
            read_context_at_once(graph, subject, tx.search, tx.read, page=page),
        )


def test_one_query_reads_what_the_type_by_type_reads_do(client: TestClient, hub: Hub) -> None:
    subject = record(client, "clinician-a")
    for page in (1000, 2):  # one page, and the fallback when the page is full
        by_type, at_once = contexts(hub, "org-a", subject, page)
        assert summary(at_once) == summary(by_type)
    meds, conditions, allergies = summary(at_once)
    assert len(meds) == 2  # the active order and the statement, not the completed order
    assert len(conditions) == 1 and len(allergies) == 1
    # Only what the check needs: drugs alone, conditions alone, nothing.
    graph = service_of(hub).index.graph()
    with acting_as(system_for("org-a")), snapshot(hub) as tx:
        drugs = read_context_at_once(graph, subject, tx.search, tx.read, conditions=False)
        assert len(drugs.medications) == 2 and not drugs.conditions and not drugs.allergies
        ills = read_context_at_once(graph, subject, tx.search, tx.read, medications=False)
        assert not ills.medications and len(ills.conditions) == 1
        none = read_context_at_once(
            graph, subject, tx.search, tx.read, medications=False, conditions=False
        )
        assert summary(none) == ([], [], [])


def test_another_tenants_record_is_not_read(client: TestClient, hub: Hub) -> None:
    subject = record(client, "clinician-b")
    _, at_once = contexts(hub, "org-a", subject, 1000)
    assert summary(at_once) == ([], [], [])
    _, own = contexts(hub, "org-b", subject, 1000)
    assert len(own.medications) == 2


def test_a_full_page_still_finds_the_interaction(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(orders, "CONTEXT_PAGE", 2)
    subject = record(client, "clinician-a")
    ibuprofen = post(client, "clinician-a", order(subject, "Ibuprofen 400 MG Oral Tablet"))
    response = client.get(
        f"/fhir/DetectedIssue?patient={subject}", headers={"X-Test-Caller": "clinician-a"}
    )
    implicated = {
        ref["reference"]
        for entry in response.json().get("entry", [])
        for ref in entry["resource"]["implicated"]
    }
    assert f"MedicationRequest/{ibuprofen['id']}" in implicated
