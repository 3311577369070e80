"""The UI shell with authentication on, in Debian's Chromium: opening the patient list sends
the browser through the sign-in (authorization code + PKCE run by the shell's own scripts);
the clinician then sees the patients of its organization only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fhirhub.core.access import SYSTEM, acting_as
from fhirhub.core.hub import build_hub
from fhirhub.core.settings import Settings
from fhirhub.fhir_store.tenancy import with_tenant
from fhirhub.plugins.security.state import security
from fhirhub.plugins.security.tenants import create_tenant
from fhirhub.plugins.security.users import create_user
from fhirhub.sdk import update
from tests.conftest import LiveServer
from tests.plugins.security.conftest import PASSWORD
from tests.ui_shell.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, require_browser

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui_browser")]


def patient(pid: str, family: str, tenant: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "name": [{"family": family, "given": ["Test"]}],
        "gender": "female",
        "birthDate": "1970-01-01",
    }
    with_tenant(resource, tenant)
    return resource


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    hub = build_hub(Settings(db=url, data_dir=tmp_path, auth="on"))  # type: ignore[call-arg]
    create_tenant(hub, "hospital-a", "Hospital A")
    create_tenant(hub, "clinic-b", "Clinic B")
    with acting_as(SYSTEM):
        update(hub, patient("a1", "Alpha-Ward", "hospital-a"))
        update(hub, patient("a2", "Beta-Ward", "hospital-a"))
        update(hub, patient("b1", "Elsewhere", "clinic-b"))
    create_user(security(hub), "dr.grey", role="clinician", tenant="hospital-a", password=PASSWORD)
    hub.store.engine.dispose()
    live = LiveServer(url, tmp_path, env={"FHIRHUB_AUTH": "on"}).start()
    yield live
    live.stop()


def test_a_clinician_signs_in_and_sees_the_patient_list(server: LiveServer) -> None:
    sync_playwright = require_browser()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        page = browser.new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{server.base}/ui/patients")
        # 401 from the API -> the shell's login -> the authorization server's form.
        page.wait_for_selector("input[name=username]")
        assert "Sign in" in page.title()
        page.fill("input[name=username]", "dr.grey")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[value=approve]")
        page.wait_for_url(f"{server.base}/ui/patients")
        page.wait_for_selector("#patient-table tbody tr")
        page.locator("#patient-table tbody tr", has_text="Beta-Ward").wait_for()
        text = page.locator("#patient-table").inner_text()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "security-patients-signed-in.png"), full_page=True)
        assert "Alpha-Ward" in text and "Beta-Ward" in text
        assert "Elsewhere" not in text  # another tenant's patient
        assert page.evaluate("sessionStorage.getItem('fhirhub.token')")
        browser.close()
        assert errors == []
