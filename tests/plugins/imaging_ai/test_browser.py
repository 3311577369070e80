"""The report page in Chromium, signed in as a clinician: a finding approved, one declined
with a reason, the impression written, the report signed, the signed form shown. Screenshots
go to ``tests/artifacts/imaging_ai/``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fhirhub.plugins.imaging_ai import synthetic
from tests.conftest import REPO, LiveServer
from tests.plugins.imaging_ai.helpers import phantom_study
from tests.plugins.security.conftest import PASSWORD
from tests.security.dicom_hub import multipart
from tests.ui_shell.test_browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, require_browser

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui_browser")]
ARTIFACTS = REPO / "tests" / "artifacts" / "imaging_ai"
REPORTS = "urn:fhirhub:imaging-ai|report"


@pytest.fixture
def server(sqlite_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """A study stored by STOW-RS and analysed while a first server runs with authentication
    off (for the default tenant hospital-a); the browser then talks to a second one with
    authentication on, as clinician dr.grey of hospital-a."""
    from fhirhub.core.hub import build_hub
    from fhirhub.core.settings import Settings
    from fhirhub.plugins.security.state import security
    from fhirhub.plugins.security.tenants import create_tenant
    from fhirhub.plugins.security.users import create_user

    env = {
        "FHIRHUB_HL7_PORT": "off",
        "FHIRHUB_DEFAULT_TENANT": "hospital-a",
        "FHIRHUB_IMAGING_AI_QUIET_SECONDS": "0.5",
        "FHIRHUB_IMAGING_AI_POLL_SECONDS": "0.2",
        "FHIRHUB_IMAGING_AI_OFFER_THRESHOLD": "0",
    }
    loader = LiveServer(sqlite_url, tmp_path, env={**env, "FHIRHUB_AUTH": "off"}).start()
    body, content_type = multipart([synthetic.part10(ds) for ds in phantom_study(2)])
    stored = httpx.post(
        f"{loader.base}/plugins/dicom/dicomweb/studies",
        content=body,
        timeout=120,
        headers={"content-type": content_type},
    )
    assert stored.status_code == 200, stored.text
    deadline = time.monotonic() + 90
    while (
        not httpx.get(f"{loader.fhir}/DiagnosticReport", params={"_tag": REPORTS})
        .json()
        .get("entry")
    ):
        assert time.monotonic() < deadline, "no preliminary report"
        time.sleep(0.2)
    loader.stop()
    hub = build_hub(Settings(db=sqlite_url, data_dir=tmp_path, auth="on"))  # type: ignore[call-arg]
    create_tenant(hub, "hospital-a", "Hospital A")
    create_user(security(hub), "dr.grey", role="clinician", tenant="hospital-a", password=PASSWORD)
    hub.close()
    live = LiveServer(sqlite_url, tmp_path, env={**env, "FHIRHUB_AUTH": "on"}).start()
    yield live
    live.stop()


def test_approve_decline_and_sign_in_the_browser(server: LiveServer) -> None:
    playwright_api = require_browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{server.base}/ui/patients")
        page.wait_for_selector("input[name=username]")
        page.fill("input[name=username]", "dr.grey")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[value=approve]")
        page.wait_for_url(f"{server.base}/ui/patients")
        assert page.locator("nav.sidebar a[data-plugin='imaging_ai']").count() == 1  # in the shell
        page.goto(f"{server.base}/plugins/imaging_ai/ui/")
        findings = page.locator(".finding")
        findings.nth(1).wait_for()
        assert findings.count() == 2
        assert "%" in (findings.first.text_content() or "")
        page.wait_for_function(
            "() => [...document.querySelectorAll('canvas')].some(c => c.width > 0)"
        )
        page.screenshot(path=str(ARTIFACTS / "report-preliminary.png"), full_page=True)

        # signing before deciding is refused, and says so
        page.fill("[name=signer-name]", "Meredith Grey")
        page.select_option("[name=signer]", "")
        page.click("#sign")
        page.wait_for_selector("#report-form .result.error")
        assert "Decide every finding" in (page.locator("#report-form .result").text_content() or "")

        findings.first.locator("button.approve").click()
        try:
            page.locator(".finding.final").wait_for()
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
            raise
        second = page.locator(".finding").nth(1)
        second.locator("input[type=text]").fill("rib shadow")
        second.locator("button.decline").click()
        page.locator(".finding.cancelled").wait_for()
        page.fill("#s-impression", "Focal opacity, follow-up advised.")
        page.fill("[name=signer-name]", "Meredith Grey")
        page.select_option("[name=signer]", "")
        page.click("#sign")
        page.locator("#final-report iframe").wait_for()
        assert page.locator("#report-status").text_content() == "final"
        html = page.locator("#final-report iframe").get_attribute("srcdoc") or ""
        assert "Focal opacity, follow-up advised." in html and "rib shadow" in html
        assert "Meredith Grey" in html
        page.screenshot(path=str(ARTIFACTS / "report-signed.png"), full_page=True)
        browser.close()
