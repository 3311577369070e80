"""Hybrid retrieval: chunk and query vectors from an OpenAI-compatible ``/v1/embeddings``
endpoint (the scripted server's deterministic model), fused with BM25."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.plugins.ai.conftest import as_, build, seed, settle
from tests.plugins.ai.model_server import Script


@pytest.fixture
def client(sqlite_url: str, tmp_path: Path, model: tuple[str, Script]) -> Iterator[TestClient]:
    from fhirhub.core.http.app import create_app

    hub = build(sqlite_url, tmp_path, embeddings_base_url=model[0], embeddings_model="bow")
    with TestClient(create_app(hub=hub)) as test_client:
        seed(hub)
        glucose = {
            "resourceType": "Observation",
            "status": "final",
            "code": {
                "coding": [{"system": "http://loinc.org", "code": "2339-0"}],
                "text": "Glucose",
            },
            "subject": {"reference": "Patient/pa1"},
            "effectiveDateTime": "2024-04-01",
            "valueQuantity": {"value": 9.8, "unit": "mmol/L"},
        }
        created = test_client.post("/fhir/Observation", json=glucose, headers=as_("clin-a"))
        assert created.status_code == 201, created.text
        settle(hub)
        test_client.hub = hub  # type: ignore[attr-defined]
        test_client.glucose = created.json()["id"]  # type: ignore[attr-defined]
        yield test_client
    hub.close()


def test_vectors_find_what_words_do_not(client: TestClient, model: tuple[str, Script]) -> None:
    from fhirhub.plugins.ai.index import ai_chunk, index_of
    from fhirhub.sdk import Access

    hub = client.hub  # type: ignore[attr-defined]
    index = index_of(hub)
    access = Access("user:x", tenant="org-a")
    lexical = index.bm25.search("blood sugar", index.scopes_for(access, "pa1"), 5)
    assert lexical == []
    found = client.post(
        "/plugins/ai/v1/retrieve",
        json={"query": "blood sugar", "patient": "pa1"},
        headers=as_("clin-a"),
    ).json()
    glucose_id = client.glucose  # type: ignore[attr-defined]
    assert found["sources"][0]["reference"] == f"Observation/{glucose_id}"
    with index.db.read() as conn:
        missing = conn.execute(
            select(func.count()).select_from(ai_chunk).where(ai_chunk.c.vector.is_(None))
        ).scalar_one()
    assert missing == 0
    _base, script = model
    assert "blood sugar" in script.embedded
    # Another tenant's chunks stay out of the vector ranking too.
    other = client.post(
        "/plugins/ai/v1/retrieve",
        json={"query": "zebrafish protocol", "patient": "pa1"},
        headers=as_("clin-a"),
    ).json()
    assert all(s["reference"] != "DocumentReference/nb" for s in other["sources"])
