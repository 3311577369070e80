"""The literature tools: offered only when configured, real HTTP to their services (a loopback
stand-in here), and no patient identifier in what is sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.plugins.ai.conftest import as_, build, seed, settle
from tests.plugins.ai.literature_server import literature_server
from tests.plugins.ai.model_server import Reply, Script

CHAT = "/plugins/ai/v1/chat/completions"


@pytest.fixture
def literature_client(
    sqlite_url: str, tmp_path: Path, model: tuple[str, Script]
) -> Iterator[tuple[TestClient, Script, Any]]:
    from fhirhub.core.http.app import create_app

    with literature_server() as (base, received):
        hub = build(
            sqlite_url,
            tmp_path,
            base_url=model[0],
            model="scripted",
            pubmed_base_url=f"{base}/eutils",
            clinicaltrials_base_url=f"{base}/ctgov",
            medlineplus_base_url=f"{base}/medlineplus",
        )
        with TestClient(create_app(hub=hub)) as client:
            seed(hub)
            settle(hub)
            yield client, model[1], received
        hub.close()


def test_literature_tools_answer_without_identifiers(
    literature_client: tuple[TestClient, Script, Any],
) -> None:
    client, script, received = literature_client
    script.replies = [
        Reply(
            tool_calls=[
                ("pubmed_search", {"query": "metformin Alice Alpha MRN-778899"}),
                ("trials_search", {"query": "type 2 diabetes"}),
                ("medlineplus_lookup", {"code": "E11.9", "system": "icd10"}),
            ]
        ),
        Reply("See the articles."),
    ]
    body = {"messages": [{"role": "user", "content": "evidence?"}], "patient": "pa1"}
    response = client.post(CHAT, json=body, headers=as_("clin-a"))
    assert response.status_code == 200, response.text
    offered = {t["function"]["name"] for t in script.requests[0]["tools"]}
    assert {"pubmed_search", "trials_search", "medlineplus_lookup"} <= offered
    results = [m["content"] for m in script.requests[1]["messages"] if m["role"] == "tool"]
    joined = " ".join(results)
    assert "Metformin and lactic acidosis" in joined
    assert "NCT00000001" in joined and "Diabetes Type 2" in joined
    sent = str(received)
    assert "Alice" not in sent and "MRN-778899" not in sent and "metformin" in sent
    assert (
        "/medlineplus",
        {
            "mainSearchCriteria.v.cs": ["2.16.840.1.113883.6.90"],
            "mainSearchCriteria.v.c": ["E11.9"],
            "knowledgeResponseType": ["application/json"],
        },
    ) in received


def test_unconfigured_literature_tools_are_not_offered(
    model_client: TestClient, model: tuple[str, Script]
) -> None:
    _base, script = model
    script.replies = [Reply(tool_calls=[("pubmed_search", {"query": "x"})]), Reply("ok")]
    model_client.post(
        CHAT, json={"messages": [{"role": "user", "content": "x"}]}, headers=as_("clin-a")
    )
    offered = {t["function"]["name"] for t in script.requests[0]["tools"]}
    assert "pubmed_search" not in offered
    results = [m["content"] for m in script.requests[1]["messages"] if m["role"] == "tool"]
    assert any("unknown tool" in r for r in results)
