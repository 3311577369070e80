"""Plugin discovery and isolation: broken plugins are reported and disabled, the hub starts;
allow/block lists; vetoes in resource_before_write; code systems; health checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from fhirhub.core.http.app import create_app
from fhirhub.core.hub import build_hub
from fhirhub.core.plugins import plugin_infos
from fhirhub.core.settings import Settings, load_settings
from fhirhub.sdk import FhirError, hookimpl, search
from tests.core.fhir_samples import patient


class BrokenAtStartup:
    PLUGIN_NAME = "broken-startup"

    @hookimpl
    def startup(self, hub: Any) -> None:
        raise RuntimeError("cannot reach the lab system")

    @hookimpl
    def ui_pages(self, hub: Any) -> list[dict[str, Any]]:
        return [{"path": "/plugins/broken-startup/", "title": "Broken"}]


class BrokenRegistration:
    PLUGIN_NAME = "broken-registration"

    @hookimpl
    def register_operations(self, hub: Any) -> list[Any]:
        raise ValueError("bad operation table")


class NoDeceased:
    """Vetoes writes it does not accept, inside the transaction."""

    PLUGIN_NAME = "no-deceased"

    @hookimpl
    def resource_before_write(self, resource: dict[str, Any], context: Any) -> None:
        if resource.get("deceasedBoolean"):
            raise FhirError(422, "This hub does not accept deceased patients", code="business-rule")
        resource.setdefault("active", True)  # enrichment


class WardVocabulary:
    PLUGIN_NAME = "ward-vocabulary"

    @hookimpl
    def register_code_systems(self, hub: Any) -> list[dict[str, Any]]:
        return [
            {
                "resourceType": "CodeSystem",
                "url": "http://hospital.example/cs/wards",
                "status": "active",
                "content": "complete",
                "concept": [{"code": "icu", "display": "Intensive care"}],
            }
        ]

    @hookimpl
    def health_checks(self, hub: Any) -> list[tuple[str, Any]]:
        return [("terminology", lambda: True)]


def settings(url: str, tmp_path: Path, **extra: Any) -> Settings:
    return Settings(db=url, data_dir=tmp_path, listeners=False, **extra)


def test_failing_plugins_are_disabled_and_the_hub_still_serves(
    sqlite_url: str, tmp_path: Path
) -> None:
    hub = build_hub(
        settings(sqlite_url, tmp_path), extra_plugins=[BrokenAtStartup(), BrokenRegistration()]
    )
    with TestClient(create_app(hub=hub)) as client:
        assert client.get("/fhir/metadata").status_code == 200
        assert client.get("/healthz").json()["status"] == "ok"
        assert "Broken" not in client.get("/").text  # its page vanished with it
    infos = {i.name: i for i in plugin_infos(hub.plugins)}
    assert not infos["broken-startup"].enabled and "lab system" in (
        infos["broken-startup"].error or ""
    )
    assert not infos["broken-registration"].enabled and "operation table" in (
        infos["broken-registration"].error or ""
    )
    assert infos["core-operations"].enabled
    hub.close()


def test_before_write_can_veto_and_enrich(database_url: str, tmp_path: Path) -> None:
    hub = build_hub(settings(database_url, tmp_path), extra_plugins=[NoDeceased()])
    with TestClient(create_app(hub=hub)) as client:
        vetoed = client.post("/fhir/Patient", content=orjson.dumps(patient(deceasedBoolean=True)))
        assert vetoed.status_code == 422 and "deceased" in vetoed.json()["issue"][0]["diagnostics"]
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": patient(mrn="a"), "request": {"method": "POST", "url": "Patient"}},
                {
                    "resource": patient(mrn="b", deceasedBoolean=True),
                    "request": {"method": "POST", "url": "Patient"},
                },
            ],
        }
        assert client.post("/fhir", content=orjson.dumps(bundle)).status_code == 422
        assert search(hub, "Patient", {"_summary": "count"}) == []
        accepted = client.post("/fhir/Patient", content=orjson.dumps(patient())).json()
        assert accepted["active"] is True
    hub.close()


def test_code_systems_are_stored_once_and_health_checks_reported(
    sqlite_url: str, tmp_path: Path
) -> None:
    for _ in range(2):  # a restart must not write a second version
        hub = build_hub(settings(sqlite_url, tmp_path), extra_plugins=[WardVocabulary()])
        stored = search(hub, "CodeSystem", {"url": "http://hospital.example/cs/wards"})
        assert len(stored) == 1 and stored[0]["meta"]["versionId"] == "1"
        with TestClient(create_app(hub=hub)) as client:
            assert client.get("/healthz").json()["checks"]["terminology"] == "ok"
        hub.close()


def test_allow_and_block_lists(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = build_hub(settings(sqlite_url, tmp_path, plugins="+hello,-hl7"))
    names = {i.name: i.enabled for i in plugin_infos(blocked.plugins)}
    assert names["hello"] is True and names["hl7"] is False and names["dicom"] is True
    with TestClient(create_app(hub=blocked)) as client:
        assert client.get("/fhir/$hello").status_code == 200
    blocked.close()
    blocked = build_hub(settings(sqlite_url, tmp_path, plugins="-hello"))
    names = {i.name: i.enabled for i in plugin_infos(blocked.plugins)}
    assert names["hello"] is False and names["core-operations"] is True
    with TestClient(create_app(hub=blocked)) as client:
        assert client.get("/fhir/$hello").status_code == 404
    blocked.close()
    default = build_hub(settings(sqlite_url, tmp_path, plugins=""))
    assert not {i.name: i.enabled for i in plugin_infos(default.plugins)}["hello"]
    default.close()
    config = tmp_path / "fhirhub.toml"
    config.write_text('[fhirhub]\nplugins = "hello"\n\n[plugin.hello]\ngreeting = "hi"\n')
    monkeypatch.delenv("FHIRHUB_PLUGINS", raising=False)
    only = build_hub(load_settings(config, db=sqlite_url, data_dir=tmp_path, listeners=False))
    enabled = {i.name for i in plugin_infos(only.plugins) if i.enabled}
    assert "hello" in enabled and "dicom" not in enabled and "hl7" not in enabled
    from fhirhub.sdk import plugin_settings

    assert plugin_settings(only, "hello") == {"greeting": "hi"}
    only.close()


def test_trace_switch_logs_every_hook_call(
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("FHIRHUB_TRACE_HOOKS", "1")
    with caplog.at_level("INFO", logger="fhirhub.plugins"):
        hub = build_hub(settings(sqlite_url, tmp_path), extra_plugins=[WardVocabulary()])
        try:
            hub.plugins.hook.health_checks(hub=hub)
        finally:
            hub.close()
    traced = " ".join(record.getMessage() for record in caplog.records)
    assert "health_checks" in traced


def test_entry_point_plugin_that_fails_to_import_is_reported(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real installed distribution (a dist-info with an entry point) whose module raises."""
    site = tmp_path / "site"
    dist_info = site / "fhirhub_broken_import-0.3.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fhirhub-broken-import\nVersion: 0.3\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[fhirhub.plugins]\nbroken-import = fhirhub_broken_import\n"
    )
    (site / "fhirhub_broken_import.py").write_text("raise ImportError('needs libfoo 2')\n")
    monkeypatch.syspath_prepend(str(site))
    hub = build_hub(settings(sqlite_url, tmp_path))
    try:
        infos = {i.name: i for i in plugin_infos(hub.plugins)}
        broken = infos["broken-import"]
        assert (broken.source, broken.version, broken.enabled) == (
            "fhirhub-broken-import",
            "0.3",
            False,
        )
        assert broken.error == "ImportError: needs libfoo 2"
        assert not infos["hello"].enabled  # the example is opt-in
        assert infos["dicom"].enabled
    finally:
        hub.close()
