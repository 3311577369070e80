"""The top bar's extension point (``ui_topbar_items``): public surface for plugin authors.
Items render on every shell page with the shell's button, badge and panel and the plugin's
script; malformed ones are logged and left out; a raising plugin is disabled alone."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from fhirhub.core.hookspecs import hookimpl
from fhirhub.ui_shell.topbar import _item
from tests.ui_shell.test_shell_pages import ClientFactory, make_client  # noqa: F401

SCRIPT = "/plugins/bed-board/page/alerts.js"


class AlertsPlugin:
    @hookimpl
    def ui_topbar_items(self, hub: Any) -> list[dict[str, Any]]:
        return [
            {"id": "bed-alerts", "title": "Bed alerts", "icon": "🛏", "script": SCRIPT,
             "order": 20},
            {"id": "clock", "title": "Clock", "script": "/plugins/clock/clock.js", "order": 5},
        ]  # fmt: skip


class MalformedPlugin:
    @hookimpl
    def ui_topbar_items(self, hub: Any) -> list[Any]:
        return [
            "not a dict",
            {"id": "remote", "title": "Remote", "script": "https://evil.example/x.js"},
            {"id": "no-title", "title": " ", "script": "/plugins/x/x.js"},
            {"id": "bad id!", "title": "Bad", "script": "/plugins/x/x.js"},
            {"id": "bed-alerts", "title": "Duplicate", "script": "/plugins/x/x.js"},
            {"id": "markup", "title": "Markup", "script": "/x.js", "icon": "<img src=x>"},
            {"id": "fine", "title": "Fine", "script": "/plugins/x/fine.js"},
        ]


class BrokenPlugin:
    @hookimpl
    def ui_topbar_items(self, hub: Any) -> list[dict[str, Any]]:
        raise RuntimeError("boom")


def topbar_ids(html: str) -> list[str]:
    bar = html.split('<header class="topbar">', 1)[1].split("</header>", 1)[0]
    return re.findall(r'<div class="topbar-item" id="topbar-([^"]+)"', bar)


def scripts(html: str) -> list[str]:
    return re.findall(r'<script type="module" src="([^"?]+)', html)


@pytest.mark.parametrize("path", ["/", "/ui/patients", "/ui/patients/p1", "/ui/page?path=/x"])
def test_items_render_on_every_shell_page_in_order(
    make_client: ClientFactory,  # noqa: F811
    path: str,
) -> None:
    client = make_client(AlertsPlugin())
    html = client.get(path).text
    assert topbar_ids(html) == ["clock", "bed-alerts"]
    item = html.split('id="topbar-bed-alerts"', 1)[1].split("</div>\n", 2)
    assert 'class="topbar-button" title="Bed alerts"' in item[0]
    assert '<span class="badge" hidden></span>' in item[0]
    assert 'id="topbar-bed-alerts-panel"' in html
    assert SCRIPT in scripts(html) and "/ui/static/topbar.js" in scripts(html)
    assert 'data-plugin="extra-0"' in html


def test_no_items_no_topbar_script(make_client: ClientFactory) -> None:  # noqa: F811
    html = make_client().get("/").text
    assert topbar_ids(html) == []
    assert "/ui/static/topbar.js" not in html


def test_malformed_items_are_logged_and_left_out(
    make_client: ClientFactory,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client(AlertsPlugin(), MalformedPlugin())
    with caplog.at_level(logging.ERROR, logger="fhirhub.ui_shell"):
        response = client.get("/")
    assert response.status_code == 200
    assert topbar_ids(response.text) == ["clock", "bed-alerts", "fine"]
    assert "evil.example" not in scripts(response.text)
    logged = caplog.text
    assert "extra-1" in logged
    for why in ("is not a dict", "local path", "no title", "needs an id", "already used", "icon"):
        assert why in logged, why


def test_a_raising_plugin_is_disabled_and_the_page_still_renders(
    make_client: ClientFactory,  # noqa: F811
) -> None:
    client = make_client(BrokenPlugin(), AlertsPlugin())
    response = client.get("/")
    assert response.status_code == 200
    assert topbar_ids(response.text) == ["clock", "bed-alerts"]
    assert client.app.state.hub.plugins.get_plugin("extra-0") is None


@pytest.mark.parametrize(
    ("spec", "valid"),
    [
        ({"id": "a", "title": "A", "script": "/plugins/a/a.js"}, True),
        ({"id": "a", "title": "A", "script": "/plugins/a/a.js", "icon": "🔔", "order": 3}, True),
        ({"id": "a", "title": "A"}, False),
        ({"id": "a", "title": "A", "script": "//evil.example/a.js"}, False),
        ({"id": "a", "title": "A", "script": "javascript:alert(1)"}, False),
        ({"id": "1a", "title": "A", "script": "/a.js"}, False),
        ({"id": "a", "title": 3, "script": "/a.js"}, False),
    ],
)
def test_item_validation(spec: dict[str, Any], valid: bool) -> None:
    assert (_item("test", spec) is not None) is valid
