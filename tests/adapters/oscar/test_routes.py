"""The OSCAR admin page and its JSON: administrators only, and an org_admin only for their
own clinic's tenant."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhirhub.adapters.oscar.runtime import drop_runtime
from fhirhub.core.http.app import create_app
from fhirhub.sdk import Access


@pytest.fixture
def client(hub: Any, oscar_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("FHIRHUB_OSCAR_DATABASE", oscar_url)
    monkeypatch.setenv("FHIRHUB_OSCAR_TENANT", "clinic-a")
    monkeypatch.setenv("FHIRHUB_OSCAR_INSTANCE", "clinic-ui")
    monkeypatch.setenv("FHIRHUB_OSCAR_INTERVAL_S", "0")
    from tests.tenants import add_tenants

    add_tenants(hub, "clinic-a", "clinic-b")
    with TestClient(create_app(hub=hub)) as test_client:
        yield test_client
    drop_runtime(hub)


def as_caller(monkeypatch: pytest.MonkeyPatch, access: Access | None) -> None:
    import fhirhub.adapters.oscar.routes as routes

    if access is not None:
        monkeypatch.setattr(routes, "current_access", lambda: access)


def test_page_is_a_shell_and_the_api_shows_status_and_runs_a_sync(client: Any, hub: Any) -> None:
    from fhirhub.adapters.oscar.runtime import runtime

    page = client.get("/plugins/oscar/ui/")
    assert page.status_code == 200 and "/plugins/oscar/ui/static/admin.js" in page.text
    assert "clinic-ui" not in page.text  # no data in the public shell
    assert client.get("/plugins/oscar/ui/static/admin.js").status_code == 200
    assert client.get("/plugins/oscar/ui/static/..%2Fplugin.py").status_code == 404
    assert client.get("/plugins/oscar/status").json()["cursors"] == {}
    started = client.post("/plugins/oscar/sync")
    assert started.status_code == 202 and started.json()["started"] is True
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
        runtime(hub).state.runs(1) and runtime(hub).state.runs(1)[0]["status"] != "running"
    ):
        time.sleep(0.5)
    status = client.get("/plugins/oscar/status").json()
    assert status["instance"] == "clinic-ui"
    assert status["runs"][0]["status"] == "ok" and status["cursors"]["demographic"]["records"] == 60


def test_only_admins_of_the_clinic_see_it(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    as_caller(
        monkeypatch,
        Access(subject="u1", tenant="clinic-a", roles=frozenset({"clinician"}), scopes=()),
    )
    assert client.get("/plugins/oscar/status").status_code == 403
    as_caller(
        monkeypatch,
        Access(subject="u2", tenant="clinic-b", roles=frozenset({"org_admin"}), scopes=()),
    )
    assert client.get("/plugins/oscar/status").status_code == 403
    assert client.post("/plugins/oscar/sync").status_code == 403
    as_caller(
        monkeypatch,
        Access(subject="u3", tenant="clinic-a", roles=frozenset({"org_admin"}), scopes=()),
    )
    assert client.get("/plugins/oscar/status").status_code == 200


def test_unconfigured_plugin_loads_and_does_nothing(hub: Any) -> None:
    from fhirhub.adapters.oscar.runtime import runtime
    from fhirhub.core.plugins import plugin_infos

    info = next(i for i in plugin_infos(hub.plugins) if i.name == "oscar")
    assert info.enabled and info.error is None
    assert runtime(hub) is None
    with TestClient(create_app(hub=hub)) as client:
        assert client.get("/plugins/oscar/status").json() == {"configured": False}
