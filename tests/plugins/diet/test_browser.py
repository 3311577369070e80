"""The diet optimiser in a real browser (Debian's Chromium through Playwright) against
``fhirhub serve`` with the demo patients: from the chart to a plan, nutrient bars, a swap,
a saved draft and its approval; and the explanation for conflicting profiles. Screenshots go
to ``tests/artifacts/diet/``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fhirhub.core.demo import load_demo_data
from fhirhub.core.hub import build_hub
from tests.conftest import REPO, LiveServer, make_settings
from tests.ui_shell.test_browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, require_browser

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui_browser")]
ARTIFACTS = REPO / "tests" / "artifacts" / "diet"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("diet-browser")
    url = f"sqlite:///{data_dir / 'hub.db'}"
    hub = build_hub(make_settings(url, data_dir))
    assert load_demo_data(hub) > 0
    hub.store.engine.dispose()
    live = LiveServer(url, data_dir).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def browser(server: LiveServer) -> Iterator[Any]:
    sync_playwright = require_browser()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    yield page
    context.close()
    assert errors == [], errors


def patient_id(server: LiveServer, family: str) -> str:
    bundle = httpx.get(f"{server.fhir}/Patient", params={"family": family}).json()
    return str(bundle["entry"][0]["resource"]["id"])


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_plan_swap_save_and_approve_from_the_chart(server: LiveServer, page: Any) -> None:
    kwame = patient_id(server, "Mensah-Boaten")
    page.goto(f"{server.base}/ui/patients/{kwame}")
    page.wait_for_selector("body[data-chart-ready=true]")
    panel = page.frame_locator("#panel-diet iframe")
    panel.locator("#panel-status", has_text="No diet order yet.").wait_for()
    panel.locator("#open-optimiser").click()
    page.wait_for_url(re.compile(r"/plugins/diet/ui/\?patient="))
    page.wait_for_selector("body[data-ready=true]")
    assert "Kwame" in page.locator("#patient-name").inner_text()

    page.locator("#optimise").click()  # no profile ticked: from the conditions
    page.wait_for_selector("#status[data-outcome=optimal]")
    status = page.locator("#status").inner_text()
    assert "profiles dash + diabetes" in status or "profiles diabetes + dash" in status
    assert page.locator(".bar").count() == 15
    sodium = page.locator('.bar[data-nutrient="sodium"] .amount').inner_text()
    assert "≤ 2300" in sodium
    names = page.locator("#plan-table tbody tr td:first-child").all_inner_texts()
    assert names and not any(re.match(r"Crustaceans|Mollusks", n) for n in names)  # shellfish
    shot(page, "01-plan")

    first = page.locator("#plan-table tbody tr").first
    swapped = first.get_attribute("data-food")
    first.locator("button.swap").click()
    page.wait_for_selector(f"#excluded:has-text('{swapped}')")
    page.wait_for_selector("body[data-state=ready] #status[data-outcome=optimal]")
    foods = page.locator("#plan-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.food)"
    )
    assert swapped not in foods
    shot(page, "02-swapped")

    page.locator("#save-draft").click()
    page.wait_for_selector("#order-status:has-text('draft')")
    page.locator("#approve").click()
    page.wait_for_selector("#order-status:has-text('active')")
    assert "Approved" in page.locator("#status").inner_text()
    shot(page, "03-approved")

    page.goto(f"{server.base}/ui/patients/{kwame}")
    page.wait_for_selector("body[data-chart-ready=true]")
    panel = page.frame_locator("#panel-diet iframe")
    panel.locator("#panel-status", has_text="Latest diet order: active").wait_for()


def test_conflicting_conditions_are_explained(server: LiveServer, page: Any) -> None:
    rafael = patient_id(server, "Antunesco")  # hypertension and CKD stage 3
    page.goto(f"{server.base}/plugins/diet/ui/?patient={rafael}")
    page.wait_for_selector("body[data-ready=true]")
    page.locator("#optimise").click()
    page.wait_for_selector("#status[data-outcome=infeasible]")
    conflicts = page.locator("#conflicts li").all_inner_texts()
    assert any("Potassium ≥ 4,700 mg (dash)" in c for c in conflicts), conflicts
    assert any("Potassium ≤ 2,000 mg (ckd)" in c for c in conflicts), conflicts
    shot(page, "04-infeasible")
    # The profiles chosen from the conditions are now ticked; CKD alone gives a plan.
    assert page.locator("input[name=profile][value=dash]").is_checked()
    assert page.locator("input[name=profile][value=ckd]").is_checked()
    page.locator("input[name=profile][value=dash]").uncheck()
    page.locator("#optimise").click()
    page.wait_for_selector("#status[data-outcome=optimal]")
    assert page.locator("#conflicts").count() == 0
