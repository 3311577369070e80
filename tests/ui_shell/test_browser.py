"""The UI shell in a real browser: Debian's Chromium, headless, driven by Playwright, against
``fhirhub serve`` in a subprocess (SQLite, the shipped demo patients, the sample plugin
installed as an entry-point plugin). Screenshots go to ``tests/artifacts/ui_shell/``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhirhub.core.demo import load_demo_data
from fhirhub.core.hub import build_hub
from tests.conftest import REPO, LiveServer, make_settings
from tests.ui_shell import sample_plugin

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # a test dependency; require_browser() reports its absence
    expect = sync_playwright = None

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui_browser")]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / "tests" / "artifacts" / "ui_shell"
TIMEOUT_MS = 15_000


def require_browser() -> Any:
    """Playwright's sync API, or skip (fail on CI, where the browser must be installed)."""
    problem = None
    if not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing (apt-get install -y chromium; make system-deps)"
    if sync_playwright is None:
        problem = "the playwright package is not installed"
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"Browser tests cannot run on CI: {problem}")
        pytest.skip(problem)
    return sync_playwright


def install_entry_point_plugin(site: Path) -> None:
    """Make the sample plugin discoverable the way a pip-installed plugin is."""
    dist = site / "fhirhub_ui_sample-0.0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fhirhub-ui-sample\nVersion: 0.0.0\n"
    )
    (dist / "entry_points.txt").write_text(
        f"[fhirhub.plugins]\n{sample_plugin.NAME} = {sample_plugin.__name__}\n"
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("ui-browser")
    url = f"sqlite:///{data_dir / 'hub.db'}"
    hub = build_hub(make_settings(url, data_dir))
    assert load_demo_data(hub) > 0
    hub.store.engine.dispose()
    site = data_dir / "site"
    install_entry_point_plugin(site)
    pythonpath = os.pathsep.join([str(site), str(REPO), os.environ.get("PYTHONPATH", "")])
    # The imaging AI's demo study would add its findings to the demo's Observations counted
    # below.
    env = {"PYTHONPATH": pythonpath, "FHIRHUB_IMAGING_AI_DEMO": "false"}
    live = LiveServer(url, data_dir, env=env).start()
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
    """A fresh page that records script errors and console errors (CSP violations included)."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on(
        "console",
        lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    page.errors = errors
    yield page
    context.close()
    assert errors == [], errors


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_dashboard_search_chart_and_plugin_page(server: LiveServer, page: Any) -> None:
    page.goto(f"{server.base}/")
    patients = page.locator('[data-count-type="Patient"]')
    # 9 demo patients and 2 records of them from other sources (the MPI's demo).
    expect(patients).to_have_text("11")
    assert patients.inner_text() == "11"
    # The counts load independently: wait for this one too before reading it.
    expect(page.locator('[data-count-type="Observation"]')).to_have_text(str(9 * 35 + 1))
    page.locator("#recent-table tbody tr").first.wait_for()
    assert page.locator("#recent-table tbody tr").count() == 15
    shot(page, "01-dashboard")

    # Search as you type: the debounce waits for the pause, then queries /fhir/Patient?name=.
    search = page.locator("#global-search")
    search.press_sequentially("okafor", delay=40)
    result = page.locator("#search-results a", has_text="MRN 100234")
    result.wait_for()
    assert "born 1958-03-14" in result.inner_text()
    assert "MRN 100234" in result.inner_text()
    shot(page, "02-search")

    result.click()
    page.wait_for_url(re.compile(r"/ui/patients/[A-Za-z0-9\-.]+$"))
    page.wait_for_selector("body[data-chart-ready=true]")
    assert page.locator("#patient-name").inner_text() == "Amara Jo Okafor-Lindqvist"
    demographics = page.locator("#panel-demographics")
    assert "1958-03-14" in demographics.inner_text()
    assert "100234" in demographics.inner_text()
    assert "14 Willow Lane" in demographics.inner_text()

    chart = page.locator('#panel-vitals svg[data-chart="bp"]')
    assert chart.locator("circle.point").count() == 14, "7 visits x systolic and diastolic"
    assert chart.locator("polyline.line").count() == 2
    assert page.locator('#panel-vitals svg[data-chart="weight"] circle.point').count() == 7
    assert page.locator("#panel-encounters tbody tr").count() == 7
    assert "Hypertension" in page.locator("#panel-conditions").inner_text()
    assert "Amlodipine" in page.locator("#panel-medications").inner_text()
    assert "Allergy to penicillin" in page.locator("#panel-allergies").inner_text()
    assert "Influenza" in page.locator("#panel-immunizations").inner_text()
    assert "knee X-ray" in page.locator("#panel-imaging").inner_text()
    plugin_panel = page.locator(f"#panel-{sample_plugin.PANEL_ID}")
    assert plugin_panel.locator("tbody tr").count() == 3, "active conditions via the plugin's url"
    shot(page, "03-chart")

    page.locator("nav.sidebar a", has_text="Sample page").click()
    page.wait_for_url(re.compile(r"/ui/page\?path="))
    heading = page.frame_locator("iframe.plugin-frame").locator("#sample-heading")
    assert heading.inner_text() == "Sample plugin page"
    assert "active" in (
        page.locator("nav.sidebar a", has_text="Sample page").get_attribute("class") or ""
    )
    shot(page, "04-plugin-page")


@pytest.mark.parametrize(
    ("typed", "expected"),
    [("1947-07-21", "Ingrid Maren Halvorsby"), ("100241", "Rafael Antunesco"), ("kwa", "Kwame")],
)
def test_search_by_birth_date_identifier_and_name_prefix(
    server: LiveServer, page: Any, typed: str, expected: str
) -> None:
    page.goto(f"{server.base}/ui/patients")
    page.locator("#global-search").press_sequentially(typed, delay=30)
    page.locator("#search-results a", has_text=expected).wait_for()
    assert page.locator("#search-results a").count() == 1
    page.locator("#global-search").press("Enter")
    page.wait_for_selector("body[data-chart-ready=true]")
    assert expected in page.locator("#patient-name").inner_text()


def test_patient_list_pages_with_bundle_links(server: LiveServer, page: Any) -> None:
    page.goto(f"{server.base}/ui/patients?count=4")
    status = page.locator("#page-status")
    expect(status).to_contain_text("Patients 1–4")
    first_page = page.locator("#patient-table tbody tr").all_inner_texts()
    assert len(first_page) == 4
    page.locator("#page-next").click()
    expect(status).to_contain_text("Patients 5–8")
    second_page = page.locator("#patient-table tbody tr").all_inner_texts()
    assert len(second_page) == 4 and not set(first_page) & set(second_page)
    page.locator("#page-next").click()
    expect(status).to_contain_text("Patients 9–11")
    assert page.locator("#page-next").is_disabled()
    page.locator("#page-previous").click()
    expect(status).to_contain_text("Patients 5–8")
    assert "of 11" in status.inner_text()
    shot(page, "05-patient-list")


def test_patient_data_is_inserted_as_text_not_html(server: LiveServer, page: Any) -> None:
    """A name that is HTML must show as text in the search results and the chart."""
    hostile = "<img src=x id=injected onerror=alert(1)>"
    response = httpx.post(
        f"{server.fhir}/Patient",
        json={"resourceType": "Patient", "name": [{"family": "Zyxtest", "given": [hostile]}]},
        headers={"Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 201, response.text
    page.on("dialog", lambda dialog: (page.errors.append("a dialog opened"), dialog.dismiss()))
    page.goto(f"{server.base}/")
    page.locator("#global-search").press_sequentially("zyxtest", delay=30)
    result = page.locator("#search-results a", has_text="Zyxtest")
    result.wait_for()
    assert hostile in result.inner_text()
    assert page.locator("#injected").count() == 0
    result.click()
    page.wait_for_selector("body[data-chart-ready=true]")
    assert hostile in page.locator("#patient-name").inner_text()
    assert page.locator("#injected").count() == 0
