"""The hello example plugin, tested the way a plugin author would: through the SDK's pytest
fixtures (``fhirhub_client``, ``fhirhub_server``), against the real app on SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from fhirhub.plugins import hello


@pytest.fixture
def fhirhub_settings(tmp_path: Path) -> Any:
    """The example is opt-in (``+hello``): off in a hub that does not name it."""
    from fhirhub.core.settings import Settings

    return Settings(
        db=f"sqlite:///{tmp_path / 'fhirhub.db'}",
        data_dir=tmp_path,
        listeners=False,
        auth="off",
        plugins="+hello",
    )


def test_hello_operation_answers_parameters(fhirhub_client: Any) -> None:
    response = fhirhub_client.get("/fhir/$hello", params={"name": "Ada"})
    assert response.status_code == 200
    assert response.json() == {
        "resourceType": "Parameters",
        "parameter": [{"name": "greeting", "valueString": "Hello, Ada!"}],
    }


def test_hello_is_listed_in_the_capability_statement(fhirhub_client: Any) -> None:
    statement = fhirhub_client.get("/fhir/metadata").json()
    operations = [op["name"] for op in statement["rest"][0].get("operation", [])]
    assert "hello" in operations


def test_hello_counts_committed_versions_on_its_page(fhirhub_client: Any, fhirhub_hub: Any) -> None:
    before = hello.visible_counts().get("Basic", 0)  # as the system: every tenant
    for text in ("one", "two"):
        created = fhirhub_client.post(
            "/fhir/Basic", json={"resourceType": "Basic", "code": {"text": text}}
        )
        assert created.status_code == 201
    assert fhirhub_hub.dispatcher.wait_idle(10)
    assert hello.visible_counts()["Basic"] == before + 2
    page = fhirhub_client.get("/plugins/hello/")
    assert page.status_code == 200
    assert "<td>Basic</td>" in page.text


def test_hello_task_writes_a_resource(fhirhub_hub: Any) -> None:
    basic_id = fhirhub_hub.tasks.submit("hello.note", "in-process").result(timeout=10)
    from fhirhub.sdk import read

    assert read(fhirhub_hub, "Basic", basic_id)["code"]["text"] == "hello: in-process"


def test_hello_over_real_http(fhirhub_server: str) -> None:
    response = httpx.post(
        f"{fhirhub_server}/fhir/$hello",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "name", "valueString": "HTTP"}],
        },
    )
    assert response.status_code == 200
    assert response.json()["parameter"][0]["valueString"] == "Hello, HTTP!"
