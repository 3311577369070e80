"""The notification bell in a real browser (Chromium through Playwright): user A sends user B
a message; B's open dashboard shows the bell's count go up within a second, without a
reload; B opens the dropdown, sees it, and follows it to the conversation, which marks it
read. A user of another tenant sees no change. Each browser context carries its user's
``X-Test-Caller`` header (the test authenticator), on page loads and API calls."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from fhirhub.core.hub import Hub
from tests.security.rest_world import served
from tests.ui_shell.test_browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    TIMEOUT_MS,
    require_browser,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui_browser")]

BELL = "#topbar-messaging-bell"


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


def open_as(browser: Any, base: str, user: str, path: str = "/") -> Any:
    context = browser.new_context(extra_http_headers={"X-Test-Caller": user})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{base}{path}")
    return page


def wait_live(page: Any) -> None:
    page.wait_for_selector(f"{BELL}[data-live='connected']")
    page.evaluate("window.notReloaded = true")


def test_the_bell_counts_up_live_and_lists_the_message(
    base: str, browser: Any, practitioners: dict[str, str]
) -> None:
    bob = open_as(browser, base, "bob")
    carol = open_as(browser, base, "carol")
    alice = open_as(browser, base, "alice", "/plugins/messaging/page/")
    alice.wait_for_selector("#status:has-text('Signed in as')")
    for page in (bob, carol):
        wait_live(page)
        assert page.locator(f"{BELL} .badge").is_hidden()
    alice.fill("#to", practitioners["bob"])
    alice.fill("#text", "Bed 4 needs a review before noon")
    started = time.monotonic()
    alice.click("#compose button[type=submit]")
    bob.wait_for_selector(f"{BELL} .badge:has-text('1')", state="visible", timeout=5_000)
    elapsed = time.monotonic() - started
    assert elapsed < 3.0, elapsed  # about a second idle; room for a loaded test machine
    assert bob.evaluate("window.notReloaded") is True
    # The dropdown: sender, text, time; a link to the conversation.
    bob.click(f"{BELL} .topbar-button")
    row = bob.locator(f"{BELL} .topbar-panel li.unread")
    row.wait_for(state="visible")
    assert "Alice" in row.inner_text() and "Bed 4 needs a review" in row.inner_text()
    assert bob.get_attribute(f"{BELL} .topbar-button", "aria-expanded") == "true"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    bob.screenshot(path=str(ARTIFACTS / "notification-bell.png"))
    # Another tenant's user: nothing changed on the open page.
    time.sleep(0.5)
    assert carol.locator(f"{BELL} .badge").is_hidden()
    carol.click(f"{BELL} .topbar-button")
    assert "No messages yet" in carol.locator(f"{BELL} .topbar-panel").inner_text()
    # Following the entry marks it read and opens the conversation in the Messages page.
    row.locator("a").click()
    bob.wait_for_url("**/ui/page?path=/plugins/messaging/page/#thread=*")
    frame = bob.frame_locator("iframe.plugin-frame")
    frame.locator("#conversation .text", has_text="Bed 4 needs a review").wait_for()
    wait_live(bob)
    assert bob.locator(f"{BELL} .badge").is_hidden()
    assert "read" in frame.locator("#conversation .meta").first.inner_text()


def test_email_preferences_are_set_on_the_messages_page(base: str, browser: Any) -> None:
    bob = open_as(browser, base, "bob", "/plugins/messaging/page/")
    bob.wait_for_selector("#email-delivery:has-text('Sent: 0')")
    bob.check("#email-notifications")
    bob.fill("#email-address", "bob@clinic-a.example")
    bob.click("#settings button[type=submit]")
    bob.wait_for_selector("#settings-status:has-text('Saved')")
    assert bob.locator("#email-effective").inner_text() == "bob@clinic-a.example"
    bob.reload()
    bob.wait_for_selector("#email-delivery:has-text('Sent: 0')")
    assert bob.is_checked("#email-notifications") and not bob.is_checked("#email-messages")
    bob.fill("#email-address", "not an address")  # the browser refuses it; so does the API
    assert bob.evaluate("document.getElementById('email-address').checkValidity()") is False
