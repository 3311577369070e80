"""The UI shell in-process: navigation and chart panels come from the enabled plugins' hooks."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhirhub.core import plugins as plugin_loading
from fhirhub.core.hookspecs import hookimpl
from fhirhub.core.http.app import create_app
from fhirhub.core.hub import Hub, build_hub
from fhirhub.ui_shell.core_panels import PANELS
from fhirhub.ui_shell.panels import _panel
from tests.conftest import make_settings
from tests.ui_shell import sample_plugin

SAMPLE = (sample_plugin.NAME, sample_plugin.__name__)

ClientFactory = Callable[..., TestClient]


@pytest.fixture
def make_client(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ClientFactory]:
    """A TestClient on a fresh SQLite hub with the sample plugin installed as a built-in."""
    monkeypatch.setattr(
        plugin_loading, "DEFAULT_PLUGINS", (*plugin_loading.DEFAULT_PLUGINS, SAMPLE)
    )
    hubs: list[Hub] = []

    def factory(*extra_plugins: object, **settings: Any) -> TestClient:
        # Only the core plugins and the sample by default, so other built-ins cannot change
        # the expected navigation; the lifespan (plugin start-up work) is not needed here.
        settings.setdefault("plugins", sample_plugin.NAME)
        config = make_settings(sqlite_url, tmp_path, **settings)
        manager = plugin_loading.make_plugin_manager(config)
        for number, plugin in enumerate(extra_plugins):
            manager.register(plugin, name=f"extra-{number}")
        hub = build_hub(config, plugin_manager=manager)
        hubs.append(hub)
        return TestClient(create_app(hub=hub), base_url="http://testserver")

    yield factory
    for hub in hubs:
        hub.store.engine.dispose()


def nav_links(html: str) -> list[tuple[str, str]]:
    """(href, title) of every link in the sidebar, in order."""
    sidebar = html.split('<nav class="sidebar"', 1)[1].split("</nav>", 1)[0]
    links = re.findall(r'<a href="([^"]*)"[^>]*>\s*<span[^>]*>[^<]*</span>([^<]*)</a>', sidebar)
    return [(href, title.strip()) for href, title in links]


def panel_ids(html: str) -> list[str]:
    return re.findall(r'data-panel-id="([^"]+)"', html)


def test_navigation_lists_core_pages_then_plugin_pages(make_client: ClientFactory) -> None:
    client = make_client()
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert nav_links(response.text) == [
        ("/", "Dashboard"),
        ("/ui/patients", "Patients"),
        ("/ui/page?path=/plugins/ui-sample/", "Sample page"),
    ]
    assert 'data-count-type="Patient"' in response.text
    assert 'id="global-search"' in response.text


def test_plugin_page_is_framed_in_the_shell(make_client: ClientFactory) -> None:
    client = make_client()
    response = client.get("/ui/page", params={"path": sample_plugin.PAGE_PATH})
    assert response.status_code == 200
    assert '<iframe class="plugin-frame" src="/plugins/ui-sample/"' in response.text
    page = client.get(sample_plugin.PAGE_PATH)
    assert page.status_code == 200
    assert "Sample plugin page" in page.text


def test_disabled_plugin_pages_and_panels_vanish(make_client: ClientFactory) -> None:
    client = make_client(plugins=f"-{sample_plugin.NAME}")
    assert ("/ui/page?path=/plugins/ui-sample/", "Sample page") not in nav_links(
        client.get("/").text
    )
    assert client.get("/ui/page", params={"path": sample_plugin.PAGE_PATH}).status_code == 404
    assert sample_plugin.PANEL_ID not in panel_ids(client.get("/ui/patients/p1").text)


def test_allow_list_keeps_core_panels(make_client: ClientFactory) -> None:
    """Core plugins stay on under an allow-list (their names start with ``core``)."""
    client = make_client(plugins="no-such-plugin")
    ids = panel_ids(client.get("/ui/patients/p1").text)
    assert ids == [panel["id"] for panel in PANELS]


def test_chart_lists_core_and_plugin_panels_in_order(make_client: ClientFactory) -> None:
    client = make_client()
    response = client.get("/ui/patients/p-1.x")
    assert response.status_code == 200
    assert 'data-patient-id="p-1.x"' in response.text
    assert panel_ids(response.text) == [
        "demographics",
        "vitals",
        "encounters",
        "conditions",
        sample_plugin.PANEL_ID,
        "medications",
        "allergies",
        "immunizations",
        "observations",
        "imaging",
    ]
    vitals = response.text.split('id="panel-vitals"', 1)[1].split(">", 1)[0]
    assert 'data-renderer="vitals"' in vitals
    assert 'data-resource-types="Observation"' in vitals
    assert 'data-params="category=vital-signs"' in vitals
    sample = response.text.split(f'id="panel-{sample_plugin.PANEL_ID}"', 1)[1].split(">", 1)[0]
    assert 'data-url="/fhir/Condition?patient={patient_id}&amp;clinical-status=active"' in sample


def test_frames_only_registered_plugin_pages(make_client: ClientFactory) -> None:
    client = make_client()
    for path in ("https://evil.example/", "//evil.example/x", "/plugins/other/", ""):
        response = client.get("/ui/page", params={"path": path})
        assert response.status_code == 404, path
        assert "<iframe" not in response.text


def test_patient_chart_rejects_ids_that_are_not_fhir_ids(make_client: ClientFactory) -> None:
    client = make_client()
    response = client.get("/ui/patients/%3Cimg%20src=x%20onerror=alert(1)%3E")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "<img src=x" not in response.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in response.text


class BrokenPlugin:
    @hookimpl
    def ui_pages(self, hub: Any) -> list[dict[str, Any]]:
        raise RuntimeError("broken on purpose")

    @hookimpl
    def ui_patient_panels(self, hub: Any) -> list[dict[str, Any]]:
        return [{"id": "broken-panel", "title": "Broken", "resource_types": ["Observation"]}]


def test_failing_plugin_is_disabled_and_its_panels_vanish(make_client: ClientFactory) -> None:
    client = make_client(BrokenPlugin())
    response = client.get("/")
    assert response.status_code == 200
    assert ("/ui/page?path=/plugins/ui-sample/", "Sample page") in nav_links(response.text)
    assert client.app.state.hub.plugins.get_plugin("extra-0") is None, "unregistered"
    assert "broken-panel" not in panel_ids(client.get("/ui/patients/p1").text)


class MalformedPlugin:
    @hookimpl
    def ui_pages(self, hub: Any) -> list[Any]:
        return [
            {"path": "javascript:alert(1)", "title": "Bad scheme"},
            {"path": "/plugins/x/", "title": ""},
            "not a dict",
            {"path": "/plugins/x/ok", "title": "Fine page", "order": 5, "icon": "✓"},
        ]

    @hookimpl
    def ui_patient_panels(self, hub: Any) -> list[Any]:
        return [
            {"title": "No id", "resource_types": ["Observation"]},
            {"id": "both", "title": "Both", "resource_types": ["Observation"], "url": "/x"},
            {"id": "remote", "title": "Remote", "url": "https://evil.example/{patient_id}"},
            {"id": "demographics", "title": "Duplicate id", "resource_types": ["Patient"]},
            {"id": "labs", "title": "Labs", "resource_types": ["Observation"], "order": 25,
             "params": "category=laboratory"},
        ]  # fmt: skip


def test_malformed_entries_are_logged_and_left_out(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(MalformedPlugin())
    with caplog.at_level(logging.ERROR, logger="fhirhub.ui_shell"):
        links = nav_links(client.get("/").text)
        ids = panel_ids(client.get("/ui/patients/p1").text)
    titles = [title for _href, title in links]
    assert titles == ["Dashboard", "Patients", "Fine page", "Sample page"]
    assert ids.count("demographics") == 1
    assert "labs" in ids and ids.index("labs") == ids.index("vitals") + 1
    assert not {"both", "remote"} & set(ids)
    logged = caplog.text
    assert "extra-0" in logged and "not a local path" in logged
    assert "already used" in logged


@pytest.mark.parametrize(
    ("spec", "valid"),
    [
        ({"id": "a", "title": "A", "resource_types": ["Observation"]}, True),
        ({"id": "a", "title": "A", "resource_types": "Observation"}, True),
        ({"id": "a", "title": "A", "url": "/fhir/Observation?patient={patient_id}"}, True),
        ({"id": "a", "title": "A", "resource_types": ["observation"]}, False),
        ({"id": "a b", "title": "A", "resource_types": ["Observation"]}, False),
        ({"id": "a", "title": "A"}, False),
        ({"id": "a", "title": "A", "url": "javascript:alert(1)"}, False),
        ({"id": "a", "title": "A", "resource_types": ["Observation"], "params": "?x=1"}, False),
    ],
)
def test_panel_spec_validation(spec: dict[str, Any], valid: bool) -> None:
    assert (_panel("test", spec) is not None) is valid


def test_ui_root_redirects_and_static_files_are_served(make_client: ClientFactory) -> None:
    client = make_client()
    response = client.get("/ui", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "/"
    script = client.get("/ui/static/chart.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert client.get("/ui/static/shell.css").status_code == 200


def test_static_scripts_use_only_the_fhir_api_and_text_nodes() -> None:
    """The browser code reaches the hub only under the FHIR base and never parses data as
    HTML (the CSP forbids inline script; this keeps data out of innerHTML as well)."""
    static = Path(__file__).resolve().parents[2] / "ui_shell" / "static"
    for script in static.glob("*.js"):
        text = script.read_text()
        assert "innerHTML" not in text and "outerHTML" not in text, script.name
        assert "insertAdjacentHTML" not in text and "document.write" not in text, script.name
        for call in re.findall(r"fetch\(([^)]*)\)", text):
            assert call.startswith("localUrl("), (script.name, call)


def test_the_conditions_panel_has_the_add_condition_form_coded_where_expand_is_served(
    make_client: ClientFactory,
) -> None:
    """The page tells the form whether the hub serves ``ValueSet/$expand`` (registered by the
    terminology plugin's ``register_operations``); the shell never imports that plugin."""

    def banner_and_conditions(html: str) -> tuple[str, str]:
        banner = html.split('id="patient-banner"', 1)[1].split(">", 1)[0]
        conditions = html.split('id="panel-conditions"', 1)[1].split(">", 1)[0]
        return banner, conditions

    with_terminology = make_client(plugins=f"{sample_plugin.NAME},terminology")
    banner, conditions = banner_and_conditions(with_terminology.get("/ui/patients/p1").text)
    assert 'data-form="add-condition"' in conditions
    assert 'data-code-lookup="true"' in banner
    without = make_client()
    banner, conditions = banner_and_conditions(without.get("/ui/patients/p1").text)
    assert 'data-form="add-condition"' in conditions
    assert 'data-code-lookup="false"' in banner


@pytest.mark.parametrize(("form", "kept"), [("add-condition", "add-condition"), ("nope", "")])
def test_panel_forms_are_the_shells_own(form: str, kept: str) -> None:
    panel = _panel("test", {"id": "a", "title": "A", "resource_types": ["Condition"], "form": form})
    assert panel is not None and panel.form == kept
