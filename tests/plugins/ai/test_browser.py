"""The chat page in a real browser (Chromium through Playwright) against ``fhirhub serve`` with
the demo patients and no model: the status line says so, a question streams an answer with
its tool calls and sources, and a source opens the cited resource."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import httpx
import pytest

from fhirhub.core.demo import load_demo_data
from fhirhub.core.hub import build_hub
from tests.conftest import REPO, LiveServer, make_settings
from tests.ui_shell.test_browser import browser, page, shot  # noqa: F401 - fixtures

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui_browser")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("ai-browser")
    url = f"sqlite:///{data_dir / 'hub.db'}"
    hub = build_hub(make_settings(url, data_dir, plugins="ai"))
    assert load_demo_data(hub) > 0
    hub.store.engine.dispose()
    env = {
        "FHIRHUB_PLUGINS": "ai",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    live = LiveServer(url, data_dir, env=env).start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the index consumer catches up after the start
        status = httpx.get(f"{live.base}/plugins/ai/v1/status").json()
        if status["indexed_resources"] > 50:
            break
        time.sleep(0.5)
    yield live
    live.stop()


def test_chat_streams_an_answer_with_sources(server: LiveServer, page: object) -> None:  # noqa: F811
    from playwright.sync_api import expect

    pressures = httpx.get(
        f"{server.fhir}/Observation", params={"code": "http://loinc.org|85354-9", "_count": "1"}
    ).json()
    patient = pressures["entry"][0]["resource"]["subject"]["reference"].split("/")[1]
    page.goto(f"{server.base}/plugins/ai/ui/?patient={patient}")  # type: ignore[attr-defined]
    status = page.locator("#model-status")  # type: ignore[attr-defined]
    expect(status).to_contain_text("No model configured")
    page.fill("#question", "What is the latest blood pressure?")  # type: ignore[attr-defined]
    page.click("form#ask button")  # type: ignore[attr-defined]
    answer = page.locator("#log li.answer").first  # type: ignore[attr-defined]
    expect(answer).to_contain_text("From the record")
    expect(answer).to_contain_text("AI-generated")
    expect(answer.locator(".tool").first).to_contain_text("fhir_search")
    link = answer.locator(".sources a").first
    expect(link).to_contain_text("Observation/")
    link.click()
    expect(page.locator("#resource")).to_contain_text('"resourceType": "Observation"')  # type: ignore[attr-defined]
    shot(page, "ai-chat")
