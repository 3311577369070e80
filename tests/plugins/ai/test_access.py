"""Two tenants, two patients: no prompt, tool call or retrieval reaches data the caller may not
read, whatever the model asks for."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from tests.plugins.ai.conftest import as_
from tests.plugins.ai.model_server import Reply, Script

CHAT = "/plugins/ai/v1/chat/completions"
RETRIEVE = "/plugins/ai/v1/retrieve"


def post(client: TestClient, caller: str, text: str, **extra: Any) -> Any:
    body = {"messages": [{"role": "user", "content": text}], **extra}
    return client.post(CHAT, json=body, headers=as_(caller))


def everything_said(answer: dict[str, Any]) -> str:
    return json.dumps(answer)


def test_chart_of_another_tenant_is_not_found(offline_client: TestClient) -> None:
    response = post(offline_client, "clin-b", "latest potassium?", patient="pa1")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


def test_patient_token_cannot_name_another_patient(offline_client: TestClient) -> None:
    response = post(offline_client, "pat-a1", "latest potassium?", patient="pa2")
    assert response.status_code == 403


def test_patient_token_sees_only_its_own_record(offline_client: TestClient) -> None:
    response = post(offline_client, "pat-a1", "What are all my potassium values and notes?")
    assert response.status_code == 200, response.text
    said = everything_said(response.json())
    assert "5.1" in said
    for other in ("3.1", "6.3", "dizziness", "zebrafish", "Observation/k3", "Observation/kb"):
        assert other not in said


def test_retrieval_stays_in_the_callers_tenant(offline_client: TestClient) -> None:
    found_a = offline_client.post(
        RETRIEVE, json={"query": "zebrafish protocol secret memo"}, headers=as_("clin-a")
    ).json()
    assert all(s["reference"] != "DocumentReference/nb" for s in found_a["sources"])
    found_b = offline_client.post(
        RETRIEVE, json={"query": "zebrafish protocol secret memo"}, headers=as_("clin-b")
    ).json()
    assert found_b["sources"][0]["reference"] == "DocumentReference/nb"
    guideline = offline_client.post(
        RETRIEVE, json={"query": "calcium gluconate"}, headers=as_("clin-b")
    ).json()
    assert guideline["sources"] == []


def test_patient_token_gets_no_other_patients_passages(offline_client: TestClient) -> None:
    found = offline_client.post(
        RETRIEVE, json={"query": "dizziness standing clinic letter"}, headers=as_("pat-a1")
    ).json()
    assert all(s["reference"] != "DocumentReference/n2" for s in found["sources"])


def test_model_tool_calls_cannot_leave_the_conversation(
    model_client: TestClient, model: tuple[str, Script]
) -> None:
    _base, script = model
    script.replies = [
        Reply(
            tool_calls=[
                ("fhir_read", {"resource_type": "Observation", "id": "kb"}),  # org-b
                ("fhir_read", {"resource_type": "Observation", "id": "k3"}),  # pa2
                ("fhir_read", {"resource_type": "Patient", "id": "pb1"}),  # org-b
                (
                    "fhir_search",
                    {"resource_type": "Observation", "params": {"patient": "Patient/pa2"}},
                ),
                ("search_documents", {"query": "zebrafish dizziness"}),
            ]
        ),
        Reply("Done."),
    ]
    response = post(model_client, "clin-a", "Look around", patient="pa1")
    assert response.status_code == 200, response.text
    meta = response.json()["fhirhub"]
    errors = [t["error"] for t in meta["tools"] if t["error"]]
    assert len(errors) == 3  # two not found, one about another patient
    results = [m for m in script.requests[1]["messages"] if m["role"] == "tool"]
    said = json.dumps(results)
    for other in ("6.3", "3.1", "Elsewhere", "zebrafish", "dizziness", "Observation/k3"):
        assert other not in said
    assert "5.1" in said  # the search stayed on pa1


def test_conversation_is_visible_to_its_patient_not_to_others(offline_client: TestClient) -> None:
    meta = post(offline_client, "clin-a", "latest potassium?", patient="pa1").json()["fhirhub"]
    answer = meta["record"]["answer"]
    assert offline_client.get(f"/fhir/{answer}", headers=as_("pat-a1")).status_code == 200
    assert offline_client.get(f"/fhir/{answer}", headers=as_("clin-b")).status_code == 404
