"""The chat page in the UI shell, and the assistant on the demo data with no model (what
``make run`` shows)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from fhirhub.core.demo import load_demo_data
from fhirhub.core.http.app import create_app
from fhirhub.core.hub import build_hub
from tests.conftest import make_settings
from tests.plugins.ai.conftest import as_


def test_chat_page_is_listed_public_and_in_the_chart(offline_client: TestClient) -> None:
    shell = offline_client.get("/")
    assert "/ui/page?path=/plugins/ai/ui/" in shell.text
    page = offline_client.get("/plugins/ai/ui/")
    assert page.status_code == 200 and "/plugins/ai/ui/static/chat.js" in page.text
    assert "<script>" not in page.text  # the CSP allows same-origin scripts only
    assert offline_client.get("/plugins/ai/ui/static/chat.js").status_code == 200
    assert offline_client.get("/plugins/ai/ui/static/passwd").status_code == 404
    chart = offline_client.get("/ui/patients/pa1", headers=as_("clin-a"))
    assert 'data-panel-id="ai-assistant"' in chart.text
    status = offline_client.get("/plugins/ai/v1/status", headers=as_("clin-a")).json()
    assert status["provider"] == "extractive" and status["model"] is None
    assert status["indexed_chunks"] > 0
    assert offline_client.get("/plugins/ai/v1/status").status_code == 401


def test_demo_data_answers_without_a_model(sqlite_url: str, tmp_path: Path) -> None:
    settings = make_settings(sqlite_url, tmp_path, auth="off", listeners=False, plugins="ai")
    hub = build_hub(settings)
    try:
        with TestClient(create_app(hub=hub)) as client:
            assert load_demo_data(hub) > 0
            assert hub.dispatcher is not None and hub.dispatcher.wait_idle(timeout=120)
            pressures = client.get(
                "/fhir/Observation", params={"code": "http://loinc.org|85354-9", "_count": "1"}
            ).json()
            subject = pressures["entry"][0]["resource"]["subject"]["reference"]
            patient = subject.split("/")[1]
            body = {
                "messages": [{"role": "user", "content": "What is the latest blood pressure?"}],
                "patient": patient,
            }
            answer = client.post("/plugins/ai/v1/chat/completions", json=body).json()
            meta = answer["fhirhub"]
            assert meta["model"] == "fhirhub-extractive"
            assert any(r.startswith("Observation/") for r in meta["references"])
            assert "From the record" in answer["choices"][0]["message"]["content"]
    finally:
        hub.close()
