"""The demo data shows the MPI at work, and the review page decides in a browser: after
``fhirhub serve --demo``-style loading, the lab's record of Amara Okafor-Lindqvist is linked to
the clinic's, and the radiology system's "Toby Wrenfeld" waits in the review queue; a person
answers on the Duplicate review page (Chromium)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhirhub.core.demo import load_demo_data
from fhirhub.core.hub import build_hub
from tests.conftest import LiveServer, make_settings
from tests.ui_shell.test_browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, require_browser

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui_browser")]

REVIEW = "http://fhirhub.org/fhir/CodeSystem/mpi|review-match"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    hub = build_hub(make_settings(url, tmp_path, listeners=False, plugins=""))
    assert load_demo_data(hub) > 0
    hub.close()
    live = LiveServer(
        url,
        tmp_path,
        env={"FHIRHUB_HL7_PORT": "off", "FHIRHUB_DICOM_PORT": "off", "FHIRHUB_PLUGINS": ""},
    ).start()
    yield live
    live.stop()


def eventually(read: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = read()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("the MPI did not get there in time")


def test_demo_shows_a_linked_person_and_a_review_decided_in_the_browser(server: LiveServer) -> None:
    fhir = server.fhir
    amara = httpx.get(f"{fhir}/Patient", params={"identifier": "100234"}).json()["entry"][0][
        "resource"
    ]["id"]

    def person() -> Any:
        found = httpx.get(f"{fhir}/Person", params={"patient": f"Patient/{amara}"}).json()
        return found.get("entry")

    [entry] = eventually(person)
    assert len(entry["resource"]["link"]) == 2

    def reviews() -> Any:
        return (
            httpx.get(f"{fhir}/Task", params={"code": REVIEW, "status": "requested"})
            .json()
            .get("entry")
        )

    [task] = eventually(reviews)
    task_id = task["resource"]["id"]

    sync_playwright = require_browser()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{server.base}/")
        page.get_by_role("link", name="Duplicate review").click()
        frame = page.frame_locator("iframe.plugin-frame")
        card = frame.locator(f"section.pair[data-task='{task_id}']")
        card.wait_for()
        text = card.inner_text()
        assert "Toby" in text and "Tobias" in text and "1984-02-11" in text and "1984-11-02" in text
        card.get_by_role("button", name="Different people").click()
        card.locator(".result:not(:empty)").wait_for()
        assert card.locator(".result").inner_text() == "Recorded as different people.", errors
        frame.locator(f"section.pair[data-task='{task_id}'][data-decided='not-same']").wait_for()
        artifacts = Path(__file__).resolve().parents[2] / "artifacts" / "mpi"
        artifacts.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(artifacts / "review-page.png"), full_page=True)
        browser.close()
        assert errors == []
    decided = httpx.get(f"{fhir}/Task/{task_id}").json()
    assert decided["status"] == "rejected"
    assert decided["output"][0]["valueCode"] == "not-same"
    assert (
        httpx.get(f"{fhir}/Task", params={"code": REVIEW, "status": "requested"})
        .json()
        .get("entry")
        is None
    )
