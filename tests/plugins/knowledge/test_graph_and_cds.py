"""$graph, Patient/$knowledge, graph edits through FHIR, and the CDS Hooks service."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub
from tests.plugins.knowledge.conftest import as_, condition, order, patient, post

EDGE = "https://fhirhub.org/fhir/StructureDefinition/knowledge-edge"
#: The CDS Hooks 2.0 card's required shape (https://cds-hooks.hl7.org/2.0/#card-attributes).
CARD_SCHEMA = {
    "type": "object",
    "required": ["summary", "indicator", "source"],
    "properties": {
        "uuid": {"type": "string"},
        "summary": {"type": "string", "maxLength": 140},
        "detail": {"type": "string"},
        "indicator": {"enum": ["info", "warning", "critical"]},
        "source": {"type": "object", "required": ["label"]},
    },
}
SERVICE_SCHEMA = {
    "type": "object",
    "required": ["hook", "description", "id"],
    "properties": {"prefetch": {"type": "object", "additionalProperties": {"type": "string"}}},
}


def test_graph_depth_two_from_a_diagnosis(client: TestClient) -> None:
    response = client.get(
        "/fhir/$graph",
        params={
            "start": "ICD10CM|I10",
            "edge": "TREATS",
            "direction": "in",
            "depth": 2,
            "view": "compact",
        },
        headers=as_("clinician-a"),
    )
    assert response.status_code == 200, response.text
    data = response.json()
    labels = {n["label"].lower() for n in data["nodes"]}
    assert "hypertension" in labels and "lisinopril" in labels
    assert all(e["kind"] == "TREATS" for e in data["edges"])
    bundle = client.get(
        "/fhir/$graph",
        params={"start": "ICD10CM|I10.0", "depth": 1, "limit": 5},
        headers=as_("clinician-a"),
    ).json()
    assert bundle["resourceType"] == "Bundle" and 0 < bundle["total"] <= 5


def test_shortest_path_and_bad_parameters(client: TestClient) -> None:
    path = client.get(
        "/fhir/$graph",
        params={"start": "RXNORM|11289", "target": "RXNORM|5640", "view": "compact"},
        headers=as_("clinician-a"),
    ).json()
    assert len(path["edges"]) == 1 and path["edges"][0]["kind"] == "CONTRAINDICATED_FOR"
    for params in (
        {"start": "FOO|1"},
        {"start": "ICD10CM|I10", "depth": "9"},
        {"start": "ICD10CM|I10", "edge": "LIKES"},
        {},
    ):
        response = client.get("/fhir/$graph", params=params, headers=as_("clinician-a"))
        assert response.status_code == 400, params
        assert response.json()["resourceType"] == "OperationOutcome"


def test_graph_edits_are_validated(client: TestClient) -> None:
    def basic(source: dict, target: dict, kind: str = "HAS_SYMPTOM") -> dict:
        return {
            "resourceType": "Basic",
            "code": {
                "coding": [
                    {
                        "system": "https://fhirhub.org/fhir/CodeSystem/knowledge-basic",
                        "code": "knowledge-edge",
                    }
                ]
            },
            "extension": [
                {
                    "url": EDGE,
                    "extension": [
                        {"url": "kind", "valueCode": kind},
                        {"url": "from", "valueCodeableConcept": source},
                        {"url": "fromKind", "valueCode": "Diagnosis"},
                        {"url": "to", "valueCodeableConcept": target},
                        {"url": "toKind", "valueCode": "Symptom"},
                    ],
                }
            ],
        }

    gout = {
        "coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M10.9"}],
        "text": "gout",
    }
    for bad in (
        basic(gout, gout),  # a cycle of one
        basic(gout, {"coding": [{"system": "urn:unknown", "code": "x"}], "text": "x"}),
        basic(gout, {"text": "joint pain"}, kind="LIKES"),
    ):
        response = client.post("/fhir/Basic", json=bad, headers=as_("clinician-a"))
        assert response.status_code == 422, response.text
    post(client, "clinician-a", basic(gout, {"text": "joint pain"}))
    client.app  # noqa: B018


def test_patient_knowledge(client: TestClient, hub: Hub) -> None:
    subject = patient(client, "clinician-a")
    condition(client, "clinician-a", subject, "38341003", "Hypertension")
    post(client, "clinician-a", order(subject, "Lisinopril 10 MG Oral Tablet"))
    post(client, "clinician-a", order(subject, "Warfarin 5 MG Oral Tablet"))
    post(client, "clinician-a", order(subject, "Aspirin 81 MG Oral Tablet"))
    pid = subject.split("/")[1]
    data = client.get(
        f"/fhir/Patient/{pid}/$knowledge?view=compact", headers=as_("clinician-a")
    ).json()
    assert data["treats"] and data["findings"]
    params = client.get(f"/fhir/Patient/{pid}/$knowledge", headers=as_("clinician-a")).json()
    assert params["resourceType"] == "Parameters"
    assert {p["name"] for p in params["parameter"]} >= {"finding", "treats"}
    assert (
        client.get(f"/fhir/Patient/{pid}/$knowledge", headers=as_("clinician-b")).status_code == 404
    )


def test_cds_hooks_discovery_and_cards(client: TestClient) -> None:
    jsonschema = pytest.importorskip("jsonschema")

    services = client.get("/plugins/knowledge/cds-services", headers=as_("clinician-a")).json()
    assert {s["hook"] for s in services["services"]} == {"order-select", "order-sign"}
    for service in services["services"]:
        jsonschema.validate(service, SERVICE_SCHEMA)
    subject = patient(client, "clinician-a")
    post(client, "clinician-a", order(subject, "Warfarin 5 MG Oral Tablet"))
    draft = {**order(subject, "Ibuprofen 400 MG Oral Tablet"), "id": "draft-1", "status": "draft"}
    request = {
        "hook": "order-sign",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {
            "userId": "Practitioner/1",
            "patientId": subject.split("/")[1],
            "draftOrders": {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": draft}],
            },
        },
    }
    response = client.post(
        "/plugins/knowledge/cds-services/knowledge-order-sign",
        json=request,
        headers=as_("clinician-a"),
    )
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    assert cards and cards[0]["indicator"] == "critical"
    for card in cards:
        jsonschema.validate(card, CARD_SCHEMA)
    # Prefetch honoured: an empty record from the EMR means no other drugs, so no card.
    empty = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    request["prefetch"] = {"medications": empty, "conditions": empty, "allergies": empty}
    cards = client.post(
        "/plugins/knowledge/cds-services/knowledge-order-sign",
        json=request,
        headers=as_("clinician-a"),
    ).json()["cards"]
    assert cards == []
    # Another tenant cannot check this tenant's patient.
    del request["prefetch"]
    other = client.post(
        "/plugins/knowledge/cds-services/knowledge-order-sign",
        json=request,
        headers=as_("clinician-b"),
    )
    assert other.status_code == 404
    bad = client.post(
        "/plugins/knowledge/cds-services/knowledge-order-sign",
        json={"hook": "order-sign"},
        headers=as_("clinician-a"),
    )
    assert bad.status_code == 400


def test_a_named_traversal_from_a_graph_definition(client: TestClient, hub: Hub) -> None:
    from fhirhub.sdk import SYSTEM, acting_as, update

    definition = {
        "resourceType": "GraphDefinition",
        "id": "treatments-and-their-interactions",
        "name": "TreatmentsAndTheirInteractions",
        "status": "active",
        "start": "Condition",
        "link": [
            {
                "path": "TREATS.in",
                "target": [
                    {
                        "type": "MedicinalProductIndication",
                        "link": [
                            {
                                "path": "CONTRAINDICATED_FOR",
                                "target": [{"type": "MedicinalProductInteraction"}],
                            }
                        ],
                    }
                ],
            }
        ],
    }
    with acting_as(SYSTEM):
        update(hub, definition)
    data = client.get(
        "/fhir/$graph",
        params={
            "start": "ICD10CM|I10",
            "graph": "GraphDefinition/treatments-and-their-interactions",
            "view": "compact",
            "limit": "2000",
        },
        headers=as_("clinician-a"),
    ).json()
    assert "edges" in data, data
    kinds = {e["kind"] for e in data["edges"]}
    assert kinds == {"TREATS", "CONTRAINDICATED_FOR"}
    assert all(e["target"] == "ICD10CM|I10" for e in data["edges"] if e["kind"] == "TREATS")
    definition["id"] = "bad"
    definition["link"][0]["path"] = "LIKES.in"
    with acting_as(SYSTEM):
        update(hub, definition)
    bad = client.get(
        "/fhir/$graph",
        params={"start": "ICD10CM|I10", "graph": "bad"},
        headers=as_("clinician-a"),
    )
    assert bad.status_code == 400
