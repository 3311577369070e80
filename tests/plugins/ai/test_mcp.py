"""The MCP server, tested with the SDK's own client over the hub's real HTTP endpoint."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def call(url: str, caller: str, tool: str, arguments: dict[str, Any]) -> Any:
    async def run() -> Any:
        async with httpx2.AsyncClient(headers={"X-Test-Caller": caller}, timeout=30) as http:
            async with Client(streamable_http_client(url, http_client=http)) as client:
                if tool == "__list__":
                    return [t.name for t in (await client.list_tools()).tools]
                if tool == "__resource__":
                    result = await client.read_resource(arguments["uri"])
                    return result.contents[0].text  # type: ignore[union-attr]
                result = await client.call_tool(tool, arguments)
                return result.structured_content or json.loads(result.content[0].text)  # type: ignore[union-attr]

    return asyncio.run(run())


@pytest.fixture
def mcp_url(served_hub: str) -> str:
    return f"{served_hub}/plugins/ai/mcp"


def test_tools_listed_and_search_runs_as_caller(mcp_url: str) -> None:
    names = call(mcp_url, "clin-a", "__list__", {})
    assert {"fhir_search_tool", "fhir_read_tool", "fhir_create_tool", "ask"} <= set(names)
    found = call(
        mcp_url,
        "clin-a",
        "fhir_search_tool",
        {"resource_type": "Observation", "params": {"code": "http://loinc.org|2823-3"}},
    )
    refs = set(found["references"])
    assert {"Observation/k1", "Observation/k2", "Observation/k3"} <= refs
    assert "Observation/kb" not in refs
    found_b = call(mcp_url, "clin-b", "fhir_search_tool", {"resource_type": "Observation"})
    assert set(found_b["references"]) == {"Observation/kb"}


def test_read_of_another_tenant_is_an_error(mcp_url: str) -> None:
    result = call(mcp_url, "clin-a", "fhir_read_tool", {"resource_type": "Observation", "id": "kb"})
    assert result["status"] == 404


def test_patient_token_limited_to_its_patient(mcp_url: str) -> None:
    result = call(mcp_url, "pat-a1", "fhir_search_tool", {"resource_type": "Observation"})
    assert "Observation/k3" not in result["references"]
    assert "Observation/k2" in result["references"]
    refused = call(
        mcp_url, "pat-a1", "fhir_search_tool", {"resource_type": "Observation", "patient": "pa2"}
    )
    assert refused["status"] == 403


def test_create_is_labelled_with_the_callers_tenant(mcp_url: str, served_hub: str) -> None:
    note = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "MCP test"},
        "subject": {"reference": "Patient/pa1"},
    }
    created = call(mcp_url, "clin-a", "fhir_create_tool", {"resource": note})
    assert created["status"] == 201
    import httpx

    seen_b = httpx.get(
        f"{served_hub}/fhir/{created['reference']}", headers={"X-Test-Caller": "clin-b"}
    )
    assert seen_b.status_code == 404
    refused = call(mcp_url, "pat-a1", "fhir_create_tool", {"resource": note})
    assert refused["status"] == 403


def test_patient_summary_resource_and_ask(mcp_url: str) -> None:
    text = call(mcp_url, "clin-a", "__resource__", {"uri": "fhirhub://patient/pa1/summary"})
    assert "Diabetes mellitus type 2" in text and "metformin" in text
    answer = call(mcp_url, "clin-a", "ask", {"question": "latest potassium?", "patient": "pa1"})
    assert "Observation/k2" in answer["sources"]
    pathway = call(
        mcp_url,
        "clin-a",
        "run_tool",
        {"name": "run_pathway", "arguments": {"name": "hyperkalaemia"}, "patient": "pa1"},
    )
    assert pathway["recommendations"][0]["title"] == "Potassium 5.5 mmol/L or below"
    assert pathway["references"] == ["Observation/k2"]


@pytest.mark.slow
def test_stdio_server_for_one_tenant(sqlite_url: str, tmp_path: Any) -> None:
    """``fhirhub ai mcp --tenant org-a`` as a subprocess, driven by the SDK's stdio client."""
    import os
    import sys
    from pathlib import Path

    from mcp import StdioServerParameters

    from tests.plugins.ai.conftest import build, seed, settle

    hub = build(sqlite_url, tmp_path)
    from fastapi.testclient import TestClient

    from fhirhub.core.http.app import create_app

    with TestClient(create_app(hub=hub)):
        seed(hub)
        settle(hub)
    hub.close()
    repo = str(Path(__file__).parents[3])
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "fhirhub.core.cli", "ai", "mcp", "--tenant", "org-a", "--db", sqlite_url],
        env={
            **os.environ,
            "PYTHONPATH": repo,
            "FHIRHUB_DATA_DIR": str(tmp_path),
            "FHIRHUB_PLUGINS": "ai",
        },
    )

    async def run() -> tuple[Any, Any]:
        async with Client(params) as client:
            found = await client.call_tool(
                "fhir_search_tool", {"resource_type": "Observation", "params": {}}
            )
            passages = await client.call_tool(
                "search_documents_tool", {"query": "zebrafish calcium gluconate"}
            )
            return found.structured_content, passages.structured_content

    found, passages = asyncio.run(run())
    assert "Observation/k2" in found["references"]
    assert "Observation/kb" not in found["references"]
    assert passages["references"] == ["DocumentReference/g1"]
