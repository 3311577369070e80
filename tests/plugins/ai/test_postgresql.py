"""The assistant on PostgreSQL: the chunk table, the index and a recorded answer."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from tests import backends
from tests.plugins.ai.conftest import as_, build, seed, settle


def test_chat_and_retrieval_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    from fhirhub.core.http.app import create_app

    backends.truncate_postgres(postgres_url)
    engine = create_engine(postgres_url)
    with engine.begin() as conn:  # the plugin's own tables are not the store's to truncate
        conn.execute(text("DROP TABLE IF EXISTS ai_chunk, ai_index_state"))
    engine.dispose()
    hub = build(postgres_url, tmp_path)
    try:
        with TestClient(create_app(hub=hub)) as client:
            seed(hub)
            settle(hub)
            body = {
                "messages": [{"role": "user", "content": "latest potassium?"}],
                "patient": "pa1",
            }
            answer = client.post(
                "/plugins/ai/v1/chat/completions", json=body, headers=as_("clin-a")
            )
            assert answer.status_code == 200, answer.text
            assert "Observation/k2" in answer.json()["fhirhub"]["references"]
            found = client.post(
                "/plugins/ai/v1/retrieve",
                json={"query": "zebrafish protocol"},
                headers=as_("clin-b"),
            ).json()
            assert found["sources"][0]["reference"] == "DocumentReference/nb"
            hidden = client.post(
                "/plugins/ai/v1/retrieve",
                json={"query": "zebrafish protocol"},
                headers=as_("clin-a"),
            ).json()
            assert hidden["sources"] == [] or all(
                s["reference"] != "DocumentReference/nb" for s in hidden["sources"]
            )
    finally:
        hub.close()
