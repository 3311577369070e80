"""Encryption at rest: sealed in the database, plain through every read path, per-tenant keys,
unreadable without the master key; on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from fhirhub.core.dispatcher import read_versions
from fhirhub.core.hub import Hub, build_hub
from fhirhub.fhir_store.encryption import MAGIC
from fhirhub.fhir_store.replay import replay
from fhirhub.fhir_store.schema import content_key, resource_current, resource_version
from fhirhub.fhir_store.tenancy import TENANT_SYSTEM
from tests.conftest import make_settings
from tests.core.fhir_samples import observation, patient


def labelled(resource: dict[str, Any], tenant: str) -> dict[str, Any]:
    return {**resource, "meta": {"security": [{"system": TENANT_SYSTEM, "code": tenant}]}}


def make_hub(url: str, data_dir: Path, **extra: Any) -> Hub:
    settings = make_settings(url, data_dir, listeners=False, **extra)
    return build_hub(settings)


@pytest.fixture
def sealed_hub(database_url: str, tmp_path: Path) -> Iterator[Hub]:
    hub = make_hub(database_url, tmp_path, encrypt_at_rest=True)
    yield hub
    hub.close()


def test_content_is_sealed_in_the_database_and_plain_everywhere_else(
    sealed_hub: Hub, tmp_path: Path
) -> None:
    from fhirhub.core.http.app import create_app

    with TestClient(create_app(hub=sealed_hub), base_url="http://testserver") as client:
        a = client.post("/fhir/Patient", json=labelled(patient(family="Okafor"), "org-a"))
        b = client.post("/fhir/Patient", json=labelled(patient(family="Wrenfield"), "org-b"))
        shared = client.post("/fhir/Patient", json=patient(family="Halvorsby"))
        assert a.status_code == b.status_code == shared.status_code == 201
        pid = a.json()["id"]
        obs = client.post(
            "/fhir/Observation", json=labelled(observation(f"Patient/{pid}"), "org-a")
        )
        assert obs.status_code == 201
        updated = client.put(f"/fhir/Patient/{pid}", json={**a.json(), "gender": "female"})
        assert updated.status_code == 200

        # Every read path answers plain JSON.
        assert client.get(f"/fhir/Patient/{pid}").json()["gender"] == "female"
        assert client.get(f"/fhir/Patient/{pid}/_history/1").json()["name"][0]["family"] == "Okafor"
        history = client.get(f"/fhir/Patient/{pid}/_history").json()
        assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
        found = client.get("/fhir/Observation?code=8867-4&_include=Observation:subject").json()[
            "entry"
        ]
        assert {e["resource"]["resourceType"] for e in found} == {"Observation", "Patient"}
        everything = client.get(f"/fhir/Patient/{pid}/$everything").json()
        assert len(everything["entry"]) == 2
        assert client.get("/fhir/Patient?family=wrenfield").json()["total"] == 1

    # In the database: no plaintext, one data key per tenant (and one for tenant-less data).
    with sealed_hub.store.engine.connect() as conn:
        for table in (resource_version, resource_current):
            contents = [row[0] for row in conn.execute(select(table.c.content))]
            assert contents and all(bytes(c).startswith(MAGIC) for c in contents if c)
            assert not any(b"Okafor" in bytes(c) or b"8867-4" in bytes(c) for c in contents if c)
        keys = {
            row[0]: row[1]
            for row in conn.execute(select(content_key.c.tenant, content_key.c.key_id))
        }
        assert set(keys) == {"org-a", "org-b", ""} and len(set(keys.values())) == 3
        # The dispatcher's events are plain too.
        events = read_versions(conn, 0, limit=1000)
        assert orjson.loads(events[0].content or b"")["resourceType"] == "Patient"

    # Replay rebuilds indexes from the sealed log.
    replay(sealed_hub.store)
    with sealed_hub.store.read() as conn:
        from fhirhub.core.interactions.search import search_bundle

        bundle = orjson.loads(
            search_bundle(sealed_hub, conn, "Patient", [("family", "okafor")], base_url="")
        )
        assert bundle["total"] == 1


def test_without_the_right_master_key_sealed_content_is_refused_clearly(
    database_url: str, tmp_path: Path
) -> None:
    from fhirhub.core.http.app import create_app

    first = make_hub(database_url, tmp_path / "one", encrypt_at_rest=True)
    with TestClient(create_app(hub=first)) as client:
        pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    first.close()

    for extra in ({"encrypt_at_rest": True}, {}):  # another master key; no key at all
        other = make_hub(database_url, tmp_path / "two", **extra)
        with TestClient(create_app(hub=other), raise_server_exceptions=False) as client:
            response = client.get(f"/fhir/Patient/{pid}")
            assert response.status_code == 500
            text = response.json()["issue"][0]["diagnostics"]
            assert "master key" in text
        other.close()

    # Content written in the clear before encryption was turned on stays readable after.
    plain = make_hub(database_url, tmp_path / "one")
    with TestClient(create_app(hub=plain)) as client:
        old = client.post("/fhir/Patient", json=patient(family="Before")).json()["id"]
    plain.close()
    again = make_hub(database_url, tmp_path / "one", encrypt_at_rest=True)
    with TestClient(create_app(hub=again)) as client:
        assert client.get(f"/fhir/Patient/{old}").json()["name"][0]["family"] == "Before"
        assert client.get(f"/fhir/Patient/{pid}").status_code == 200
    again.close()
    key_file = tmp_path / "one" / "keys" / "content-master.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
