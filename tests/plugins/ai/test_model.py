"""The assistant with a model: the ``openai`` client library talks to a scripted
OpenAI-compatible server on loopback (``model_server.py``), with tool calls and streaming."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from tests.plugins.ai.conftest import as_
from tests.plugins.ai.model_server import Reply, Script

CHAT = "/plugins/ai/v1/chat/completions"


def ask(client: TestClient, caller: str, text: str, **extra: Any) -> dict[str, Any]:
    body = {"model": "any", "messages": [{"role": "user", "content": text}], **extra}
    response = client.post(CHAT, json=body, headers=as_(caller))
    assert response.status_code == 200, response.text
    return response.json()


def stream(client: TestClient, caller: str, text: str, **extra: Any) -> list[dict[str, Any]]:
    body = {"messages": [{"role": "user", "content": text}], "stream": True, **extra}
    with client.stream("POST", CHAT, json=body, headers=as_(caller)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]]


def test_model_calls_a_tool_and_answers(
    model_client: TestClient, model: tuple[str, Script]
) -> None:
    _base, script = model
    script.replies = [
        Reply(tool_calls=[("fhir_search", {"resource_type": "Condition", "params": {}})]),
        Reply("She has a recorded Diabetes mellitus type 2 [Condition/c1]."),
    ]
    answer = ask(model_client, "clin-a", "Summarise her history", patient="pa1")
    meta = answer["fhirhub"]
    assert meta["model"] == "scripted"
    assert [t["name"] for t in meta["tools"]][-1] == "fhir_search"
    assert "Condition/c1" in meta["references"]
    # The model saw the tool's result in the second request.
    tool_messages = [m for m in script.requests[1]["messages"] if m["role"] == "tool"]
    assert any("Diabetes mellitus type 2" in m["content"] for m in tool_messages)
    assert "Diabetes" in answer["choices"][0]["message"]["content"]
    assert meta["guardrails"] == []
    # The Provenance's prompt hash is that of exactly what the model received last.
    from fhirhub.plugins.ai.record import PROMPT_HASH_SYSTEM, prompt_hash

    provenance = model_client.get(
        f"/fhir/{meta['record']['provenance']}", headers=as_("clin-a")
    ).json()
    hashes = [
        e["what"]["identifier"]["value"]
        for e in provenance["entity"]
        if e["what"].get("identifier", {}).get("system") == PROMPT_HASH_SYSTEM
    ]
    assert hashes == [prompt_hash(script.requests[-1]["messages"])]


def test_identifiers_never_leave_for_an_external_model(
    model_client: TestClient, model: tuple[str, Script]
) -> None:
    _base, script = model
    script.replies = [Reply("Noted.")]
    ask(
        model_client,
        "clin-a",
        "Alice Alpha (MRN-778899, phone 555-123-4567) asks about her potassium",
        patient="pa1",
    )
    sent = json.dumps(script.requests[0]["messages"])
    for secret in ("Alice", "Alpha", "MRN-778899", "555-123-4567", "1961-04-02"):
        assert secret not in sent
    assert "[NAME]" in sent


def test_claims_are_checked_against_the_record(
    model_client: TestClient, model: tuple[str, Script]
) -> None:
    _base, script = model
    script.replies = [
        Reply(
            "The patient takes warfarin daily. The latest potassium was 5.9 mmol/L. "
            "She has lupus. She is taking metformin. Her potassium was 5.1 mmol/L."
        )
    ]
    answer = ask(model_client, "clin-a", "Give me an overview", patient="pa1")
    rules = [g["rule"] for g in answer["fhirhub"]["guardrails"]]
    assert rules == ["medication-not-active", "value-not-in-record", "diagnosis-as-fact"]
    content = answer["choices"][0]["message"]["content"]
    assert "warfarin daily. [unverified: no active MedicationRequest" in content
    assert "The record does not confirm lupus" in content
    assert "She has lupus." not in content
    assert "AI-generated" in content


def test_streaming_answer_with_streamed_tool_calls(
    model_client: TestClient, model: tuple[str, Script]
) -> None:
    _base, script = model
    script.replies = [
        Reply(tool_calls=[("search_documents", {"query": "foot ulcer discharge"})]),
        Reply("She was admitted with a foot ulcer [DocumentReference/n1#0]. Follow up is planned."),
    ]
    chunks = stream(model_client, "clin-a", "Why was she admitted?", patient="pa1")
    assert chunks[0]["object"] == "chat.completion.chunk"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert "foot ulcer" in text and "AI-generated" in text
    tools = [c["fhirhub"]["tool"] for c in chunks if "tool" in c.get("fhirhub", {})]
    assert tools == [{"name": "search_documents", "arguments": {"query": "foot ulcer discharge"}}]
    final = chunks[-1]
    assert final["choices"][0]["finish_reason"] == "stop"
    assert "DocumentReference/n1#0" in [s["citation"] for s in final["fhirhub"]["sources"]]
    # Streamed upstream too: both requests asked the model server to stream.
    assert all(r.get("stream") for r in script.requests)


def test_openai_client_library_talks_to_the_hub(served_hub: str, model: tuple[str, Script]) -> None:
    """An unchanged OpenAI client pointed at the hub served over real HTTP."""
    import openai

    _base, script = model
    script.replies = [Reply("Her latest potassium was 5.1 mmol/L [Observation/k2].")]
    client = openai.OpenAI(
        base_url=f"{served_hub}/plugins/ai/v1",
        api_key="unused",
        default_headers=as_("clin-a"),
    )
    completion = client.chat.completions.create(
        model="hub",
        messages=[{"role": "user", "content": "latest potassium?"}],
        extra_body={"patient": "pa1"},
    )
    assert "5.1 mmol/L" in (completion.choices[0].message.content or "")
    streamed = client.chat.completions.create(
        model="hub",
        messages=[{"role": "user", "content": "latest potassium?"}],
        extra_body={"patient": "pa1"},
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert "AI-generated" in text
    assert [m.id for m in client.models.list()] == ["scripted"]


def test_client_tools_are_handed_back(model_client: TestClient, model: tuple[str, Script]) -> None:
    _base, script = model
    script.replies = [Reply(tool_calls=[("get_weather", {"city": "Oslo"})])]
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    answer = ask(model_client, "clin-a", "And the weather?", tools=tools)
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_model_failure_is_reported_not_hidden(
    model_client: TestClient, model: tuple[str, Script]
) -> None:
    hub = model_client.hub  # type: ignore[attr-defined]
    from fhirhub.plugins.ai.settings import settings_of

    settings_of(hub).base_url = "http://127.0.0.1:9/v1"  # nothing listens there
    settings_of(hub).timeout_s = 2
    answer = ask(model_client, "clin-a", "latest potassium?", patient="pa1")
    content = answer["choices"][0]["message"]["content"]
    assert "could not be reached" in content
