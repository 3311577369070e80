"""Order checks on MedicationRequest writes: DetectedIssues for known pairs, nothing for
unknown drugs, tenants kept apart, refusal at block_severity unless overridden."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub
from fhirhub.plugins.knowledge.vocabulary import OVERRIDE_EXTENSION
from fhirhub.sdk import validation_issues
from tests.plugins.knowledge.conftest import as_, build, condition, order, patient, post


def issues(client: TestClient, caller: str, subject: str) -> list[dict]:
    bundle = client.get(f"/fhir/DetectedIssue?patient={subject}", headers=as_(caller)).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def test_interaction_with_an_active_drug_raises_a_detected_issue(client: TestClient) -> None:
    subject = patient(client, "clinician-a")
    warfarin = post(
        client, "clinician-a", order(subject, "Warfarin Sodium 5 MG Oral Tablet", "855332")
    )
    ibuprofen = post(client, "clinician-a", order(subject, "Ibuprofen 400 MG Oral Tablet"))
    found = issues(client, "clinician-a", subject)
    assert len(found) == 1
    issue = found[0]
    assert issue["severity"] == "high"
    assert {i["reference"] for i in issue["implicated"]} == {
        f"MedicationRequest/{warfarin['id']}",
        f"MedicationRequest/{ibuprofen['id']}",
    }
    assert "bleeding" in issue["detail"].lower()
    assert "drug-interaction-mcp" in issue["evidence"][0]["detail"][0]["display"]
    assert validation_issues(issue) == []
    # Rewriting the same order does not raise the same issue twice.
    ibuprofen["note"] = [{"text": "with food"}]
    response = client.put(
        f"/fhir/MedicationRequest/{ibuprofen['id']}", json=ibuprofen, headers=as_("clinician-a")
    )
    assert response.status_code == 200
    assert len(issues(client, "clinician-a", subject)) == 1


def test_condition_and_allergy_contraindications(client: TestClient) -> None:
    subject = patient(client, "clinician-a")
    condition(client, "clinician-a", subject, "195967001", "Asthma")
    post(
        client,
        "clinician-a",
        {
            "resourceType": "AllergyIntolerance",
            "patient": {"reference": subject},
            "code": {
                "coding": [
                    {
                        "system": "http://snomed.info/sct",
                        "code": "91936005",
                        "display": "Allergy to penicillin",
                    }
                ]
            },
        },
    )
    post(client, "clinician-a", order(subject, "Propranolol 10 MG Oral Tablet"))
    post(client, "clinician-a", order(subject, "Amoxicillin 500 MG Oral Capsule"))
    checks = sorted(i["code"]["coding"][0]["code"] for i in issues(client, "clinician-a", subject))
    assert checks == ["drug-allergy", "drug-condition"]


def test_unknown_drugs_and_inactive_orders_raise_nothing(client: TestClient) -> None:
    subject = patient(client, "clinician-a")
    post(client, "clinician-a", order(subject, "Warfarin 5 MG Oral Tablet"))
    post(client, "clinician-a", order(subject, "Zzyzxumab 10 MG Injection"))
    post(
        client,
        "clinician-a",
        {**order(subject, "Aspirin 81 MG Oral Tablet"), "status": "completed"},
    )
    assert issues(client, "clinician-a", subject) == []


def test_tenants_are_kept_apart(client: TestClient) -> None:
    subject = patient(client, "clinician-a")
    post(client, "clinician-a", order(subject, "Warfarin 5 MG Oral Tablet"))
    other = patient(client, "clinician-b")
    post(client, "clinician-b", order(other, "Ibuprofen 200 MG Oral Tablet"))
    assert issues(client, "clinician-b", other) == []  # org-a's warfarin is not org-b's patient's
    post(client, "clinician-a", order(subject, "Naproxen 220 MG Oral Tablet"))
    found = issues(client, "clinician-a", subject)
    assert found and all(i["severity"] == "high" for i in found)  # warfarin-naproxen, and by class
    assert issues(client, "clinician-b", subject) == []  # org-b cannot see org-a's issues


def test_a_tenant_edit_applies_to_that_tenant_only(client: TestClient, hub: Hub) -> None:
    edit = {
        "resourceType": "MedicinalProductContraindication",
        "contained": [{"resourceType": "Medication", "id": "drug", "code": {"text": "metformin"}}],
        "subject": [{"reference": "#drug"}],
        "disease": {
            "coding": [{"system": "http://snomed.info/sct", "code": "38341003"}],
            "text": "hypertension (house rule)",
        },
        "extension": [
            {
                "url": "https://fhirhub.org/fhir/StructureDefinition/knowledge-edge",
                "extension": [
                    {"url": "kind", "valueCode": "CONTRAINDICATED_FOR"},
                    {"url": "severity", "valueCode": "low"},
                ],
            }
        ],
    }
    post(client, "clinician-b", edit)
    hub.dispatcher.wait_idle()
    for caller in ("clinician-a", "clinician-b"):
        subject = patient(client, caller)
        condition(client, caller, subject, "38341003", "Hypertension")
        post(client, caller, order(subject, "Metformin 500 MG Oral Tablet"))
        found = issues(client, caller, subject)
        assert len(found) == (1 if caller == "clinician-b" else 0), caller


def test_an_order_only_client_is_still_checked(client: TestClient) -> None:
    subject = patient(client, "clinician-a")
    post(client, "clinician-a", order(subject, "Warfarin 5 MG Oral Tablet"))
    post(client, "orders-a", order(subject, "Aspirin 81 MG Oral Tablet"))
    assert issues(client, "clinician-a", subject)


def test_block_severity_refuses_unless_overridden(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FHIRHUB_KNOWLEDGE_BLOCK_SEVERITY", "high")
    hub = build(sqlite_url, tmp_path)
    from fhirhub.core.http.app import create_app

    try:
        with TestClient(create_app(hub=hub), base_url="http://testserver") as client:
            hub.dispatcher.wait_idle()
            subject = patient(client, "clinician-a")
            post(client, "clinician-a", order(subject, "Warfarin 5 MG Oral Tablet"))
            refused = client.post(
                "/fhir/MedicationRequest",
                json=order(subject, "Ibuprofen 400 MG Oral Tablet"),
                headers=as_("clinician-a"),
            )
            assert refused.status_code == 422
            outcome = refused.json()
            assert outcome["resourceType"] == "OperationOutcome"
            assert "ibuprofen" in outcome["issue"][0]["diagnostics"].lower()
            bundle = client.get(
                f"/fhir/MedicationRequest?patient={subject}", headers=as_("clinician-a")
            ).json()
            assert bundle.get("total", len(bundle.get("entry", []))) == 1  # nothing stored
            override = order(
                subject,
                "Ibuprofen 400 MG Oral Tablet",
                extension=[
                    {"url": OVERRIDE_EXTENSION, "valueString": "short course, INR monitored"}
                ],
            )
            post(client, "clinician-a", override)
            found = issues(client, "clinician-a", subject)
            assert len(found) == 1
            assert "INR monitored" in found[0]["mitigation"][0]["action"]["text"]
    finally:
        hub.close()


def test_an_hl7_order_is_checked_against_the_diagnoses_of_its_own_message(
    client: TestClient, hub: Hub
) -> None:
    from tests.adapters.hl7.stored import send, stored

    message = "\n".join(
        [
            "MSH|^~\\&|CPOE|HOSP|PHARM|HOSP|20240301||ORM^O01|RX-KN-1|P|2.5.1",
            "PID|1||P-KN-1^^^HOSP^MR||Wheeze^Pat||19700101|M",
            "ORC|NW|PO-KN-1^CPOE|||||||20240301",
            "RXO|8787^Propranolol^RXNORM|10||mg^milligram^UCUM",
            "DG1|1||J45.909^Unspecified asthma, uncomplicated^I10||20240301|A",
        ]
    )
    assert send(hub, message).code == "AA"
    (issue,) = stored(hub, "DetectedIssue")
    assert issue["code"]["coding"][0]["code"] == "drug-condition"
    assert issue["severity"] == "high"
    implicated = {ref["reference"].split("/")[0] for ref in issue["implicated"]}
    assert implicated == {"MedicationRequest", "Condition"}


def test_concurrent_orders_for_one_patient_are_checked_against_each_other(
    database_url: str, tmp_path: Path
) -> None:
    """Two interacting orders written at the same moment: whichever commits second sees the
    first (the check reads after taking the writer's lock: SQLite's single writer,
    PostgreSQL's log lock under read committed), so the pair is never missed."""
    from concurrent.futures import ThreadPoolExecutor

    from fhirhub.core.http.app import create_app
    from fhirhub.sdk import acting_as, create
    from tests.plugins.knowledge.conftest import CALLERS

    hub = build(database_url, tmp_path)

    def write(resource: dict) -> None:
        with acting_as(CALLERS["clinician-a"]):
            create(hub, resource)

    try:
        with TestClient(create_app(hub=hub), base_url="http://testserver") as client:
            hub.dispatcher.wait_idle()
            for _ in range(3):
                subject = patient(client, "clinician-a")
                orders = [
                    order(subject, "Warfarin 5 MG Oral Tablet"),
                    order(subject, "Aspirin 81 MG"),
                ]
                with ThreadPoolExecutor(2) as pool:
                    list(pool.map(write, orders))
                assert issues(client, "clinician-a", subject)
    finally:
        hub.close()
