"""AI drafts: stored preliminary with the answer's provenance, final only through a
clinician's sign-off."""

from __future__ import annotations

import base64

from fastapi.testclient import TestClient

from fhirhub.sdk import validation_issues
from tests.plugins.ai.conftest import as_


def _answer(client: TestClient) -> str:
    body = {"messages": [{"role": "user", "content": "latest potassium?"}], "patient": "pa1"}
    response = client.post("/plugins/ai/v1/chat/completions", json=body, headers=as_("clin-a"))
    return str(response.json()["fhirhub"]["record"]["answer"])


def test_draft_then_sign_off(offline_client: TestClient) -> None:
    answer = _answer(offline_client)
    created = offline_client.post(
        "/plugins/ai/v1/drafts", json={"answer": answer}, headers=as_("clin-a")
    )
    assert created.status_code == 201, created.text
    draft = created.json()
    assert validation_issues(draft) == []
    assert draft["docStatus"] == "preliminary"
    assert "Potassium" in base64.b64decode(draft["content"][0]["attachment"]["data"]).decode()
    found = offline_client.get(
        "/fhir/Provenance",
        params={"target": f"DocumentReference/{draft['id']}"},
        headers=as_("clin-a"),
    ).json()["entry"]
    provenance = next(
        e["resource"]
        for e in found
        if e["resource"].get("activity", {}).get("text") == "AI-drafted note"
    )
    assert validation_issues(provenance) == []
    what = [e["what"] for e in provenance["entity"]]
    assert {"reference": "Observation/k2"} in what
    assert any(
        w.get("identifier", {}).get("system") == "urn:fhirhub:ai:prompt-sha256" for w in what
    )
    assert any(
        a["who"].get("identifier", {}).get("value") == "fhirhub-extractive"
        for a in provenance["agent"]
    )

    # Finalising by a plain update is refused; the sign-off works once.
    draft["docStatus"] = "final"
    put = offline_client.put(
        f"/fhir/DocumentReference/{draft['id']}", json=draft, headers=as_("clin-a")
    )
    assert put.status_code == 409, put.text
    untagged = {k: v for k, v in draft.items() if k != "meta"}
    put = offline_client.put(
        f"/fhir/DocumentReference/{draft['id']}", json=untagged, headers=as_("clin-a")
    )
    assert put.status_code == 409, put.text
    assert (
        offline_client.post(
            f"/plugins/ai/v1/drafts/{draft['id']}/sign", headers=as_("clin-b")
        ).status_code
        == 404
    )
    assert (
        offline_client.post(
            f"/plugins/ai/v1/drafts/{draft['id']}/sign", headers=as_("pat-a1")
        ).status_code
        == 403
    )
    signed = offline_client.post(f"/plugins/ai/v1/drafts/{draft['id']}/sign", headers=as_("clin-a"))
    assert signed.status_code == 200, signed.text
    assert signed.json()["docStatus"] == "final"
    assert signed.json()["authenticator"]["identifier"]["value"] == "user:clin-a"
    again = offline_client.post(f"/plugins/ai/v1/drafts/{draft['id']}/sign", headers=as_("clin-a"))
    assert again.status_code == 409


def test_draft_needs_an_answer_of_the_assistant(offline_client: TestClient) -> None:
    for body in ({}, {"answer": "Observation/k1"}, {"answer": 5}):
        response = offline_client.post("/plugins/ai/v1/drafts", json=body, headers=as_("clin-a"))
        assert response.status_code == 400, body
    other = offline_client.post(
        "/plugins/ai/v1/drafts", json={"answer": _answer(offline_client)}, headers=as_("clin-b")
    )
    assert other.status_code == 404
