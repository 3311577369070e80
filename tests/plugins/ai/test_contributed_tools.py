"""Another plugin's tool, offered to the model through the ``ai_tools`` hook, runs as the
caller (here a count of the patient's observations, read with the SDK)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhirhub.sdk import FhirError, Hub, hookimpl, search
from tests.plugins.ai.conftest import as_, build, seed, settle
from tests.plugins.ai.model_server import Reply, Script


class CountingPlugin:
    PLUGIN_NAME = "counting"

    @hookimpl
    def ai_tools(self, hub: Hub) -> list[dict[str, Any]]:
        def count(arguments: dict[str, Any], patient: str | None) -> dict[str, Any]:
            target = arguments.get("patient") or patient
            if not target:
                raise FhirError(400, "Which patient?")
            found = search(hub, "Observation", {"patient": f"Patient/{target}"})
            return {"count": len(found), "references": [f"Observation/{o['id']}" for o in found]}

        return [
            {
                "name": "count_observations",
                "description": "How many observations the patient has.",
                "parameters": {"type": "object", "properties": {"patient": {"type": "string"}}},
                "run": count,
            },
            {"name": "bad name!", "run": count},  # malformed: ignored
        ]


@pytest.fixture
def client(sqlite_url: str, tmp_path: Path, model: tuple[str, Script]) -> Iterator[TestClient]:
    from fhirhub.core.http.app import create_app

    hub = build(sqlite_url, tmp_path, CountingPlugin(), base_url=model[0], model="scripted")
    with TestClient(create_app(hub=hub)) as test_client:
        seed(hub)
        settle(hub)
        yield test_client
    hub.close()


def test_contributed_tool_runs_as_the_caller(client: TestClient, model: tuple[str, Script]) -> None:
    _base, script = model
    script.replies = [
        Reply(tool_calls=[("count_observations", {"patient": "pb1"})]),  # org-b's patient
        Reply("Done."),
        Reply(tool_calls=[("count_observations", {})]),
        Reply("Done."),
    ]
    body = {"messages": [{"role": "user", "content": "count"}], "patient": "pa1"}
    first = client.post("/plugins/ai/v1/chat/completions", json=body, headers=as_("clin-a"))
    offered = [t["function"]["name"] for t in script.requests[0]["tools"]]
    assert "count_observations" in offered and "bad name!" not in offered
    assert first.json()["fhirhub"]["tools"][-1]["references"] == []  # org-b not visible
    second = client.post("/plugins/ai/v1/chat/completions", json=body, headers=as_("clin-a"))
    refs = second.json()["fhirhub"]["tools"][-1]["references"]
    assert set(refs) == {"Observation/k1", "Observation/k2", "Observation/w1"}
