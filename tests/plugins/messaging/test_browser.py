"""The Messages page in a real browser (Chromium through Playwright): user A sends a message,
user B's open page shows it within a second, without a reload. Each browser context carries
its user's ``X-Test-Caller`` header (the test authenticator), on page loads and API calls."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from fhirhub.core.hub import Hub
from tests.security.rest_world import served
from tests.ui_shell.test_browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, require_browser

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui_browser")]


@pytest.fixture
def base(hub: Hub, practitioners: dict[str, str]) -> Iterator[str]:
    with served(hub) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_playwright = require_browser()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


def open_as(browser: Any, base: str, user: str) -> Any:
    context = browser.new_context(extra_http_headers={"X-Test-Caller": user})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{base}/plugins/messaging/page/")
    page.wait_for_selector("#status:has-text('Signed in as')")
    return page


def test_a_message_appears_on_the_recipients_open_page_within_a_second(
    base: str, browser: Any, practitioners: dict[str, str]
) -> None:
    bob = open_as(browser, base, "bob")
    alice = open_as(browser, base, "alice")
    assert bob.locator("#unread").inner_text() == "0"
    time.sleep(0.5)  # bob's live stream is connected once the page has loaded
    alice.fill("#to", practitioners["bob"])
    alice.fill("#text", "Bed 4 needs a review before noon")
    started = time.monotonic()
    alice.click("#compose button[type=submit]")
    bob.wait_for_selector("#threads li.unread", timeout=5_000)
    elapsed = time.monotonic() - started
    assert "Bed 4 needs a review" in bob.locator("#threads").inner_text()
    assert bob.locator("#unread").inner_text() == "1"
    assert elapsed < 3.0, elapsed  # about a second idle; room for a loaded test machine
    # Opening the thread records the read receipt: the count drops, on the same page.
    bob.click("#threads li.unread")
    bob.wait_for_selector("#unread:has-text('0')")
    assert "read" in bob.locator("#conversation .meta").first.inner_text()
