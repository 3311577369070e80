"""The OSCAR admin page and OSCAR-sourced data in the patient chart, in a real browser
(Debian's Chromium driven by Playwright) against ``fhirhub serve`` with authentication on,
reading a real MariaDB with OSCAR's schema. Screenshots go to ``tests/artifacts/oscar/``.

Two tenants: the clinic's data belongs to ``clinic-a``; its ``org_admin`` sees the page and
runs a sync, a clinician of ``clinic-a`` sees the synced chart, a clinician of ``clinic-b``
is refused the page and sees none of the clinic's patients.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from fhirhub.adapters.oscar.settings import OscarSettings
from fhirhub.adapters.oscar.sync import mapping_context
from tests.adapters.oscar.clinic_db import insert_rows
from tests.conftest import REPO, LiveServer
from tests.plugins.security.conftest import PASSWORD
from tests.ui_shell.test_browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, require_browser

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui_browser")]
ARTIFACTS = REPO / "tests" / "artifacts" / "oscar"
INSTANCE = "clinic-ui"
#: An allergy of a patient OSCAR does not have: the sync dead-letters it and carries on.
ORPHAN_ALLERGY = {
    "allergyid": 77001,
    "demographic_no": 99999,
    "entry_date": "2025-01-02",
    "DESCRIPTION": "Sulfa drugs",
    "TYPECODE": 12,
    "archived": "0",
    "lastUpdateDate": "2025-01-02 10:00:00",
}


@pytest.fixture(scope="module")
def server(
    oscar_template: tuple[str, int, str],
    clinic_rows: dict[str, list[dict[str, Any]]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    from fhirhub.core.hub import build_hub
    from fhirhub.core.settings import Settings
    from fhirhub.plugins.security.state import security
    from fhirhub.plugins.security.tenants import create_tenant
    from fhirhub.plugins.security.users import create_user
    from tests.adapters.oscar.conftest import clinic_database

    data_dir = tmp_path_factory.mktemp("oscar-browser")
    url = f"sqlite:///{data_dir / 'hub.db'}"
    with clinic_database(oscar_template, clinic_rows) as oscar_url:
        insert_rows(oscar_url, {"allergies": [ORPHAN_ALLERGY]})
        hub = build_hub(Settings(db=url, data_dir=data_dir, auth="on"))  # type: ignore[call-arg]
        create_tenant(hub, "clinic-a", "Clinic A")
        create_tenant(hub, "clinic-b", "Clinic B")
        users = security(hub)
        create_user(users, "oscar.admin", role="org_admin", tenant="clinic-a", password=PASSWORD)
        create_user(users, "dr.ames", role="clinician", tenant="clinic-a", password=PASSWORD)
        create_user(users, "dr.bell", role="clinician", tenant="clinic-b", password=PASSWORD)
        hub.close()
        env = {
            "FHIRHUB_AUTH": "on",
            "FHIRHUB_HL7_PORT": "off",
            "FHIRHUB_DICOM_PORT": "off",
            "FHIRHUB_OSCAR_DATABASE": oscar_url,
            "FHIRHUB_OSCAR_TENANT": "clinic-a",
            "FHIRHUB_OSCAR_INSTANCE": INSTANCE,
            "FHIRHUB_OSCAR_INTERVAL_S": "0",  # only "Run now" syncs
        }
        live = LiveServer(url, data_dir, env=env).start()
        try:
            yield live
        finally:
            live.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    playwright_api = require_browser()
    with playwright_api() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


def signed_in(browser: Any, server: LiveServer, username: str) -> Any:
    page = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{server.base}/ui/patients")
    page.wait_for_selector("input[name=username]")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[value=approve]")
    page.wait_for_url(f"{server.base}/ui/patients")
    return page


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def charted_patient(rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """An active patient with an active allergy, a current prescription and readable BPs."""
    for patient in rows["demographic"]:
        number = patient["demographic_no"]
        allergies = [
            a for a in rows["allergies"] if a["demographic_no"] == number and a["archived"] == "0"
        ]
        drugs = [d for d in rows["drugs"] if d["demographic_no"] == number and not d["archived"]]
        pressures = [
            m
            for m in rows["measurements"]
            if m["demographicNo"] == number
            and m["type"] == "BP"
            and re.fullmatch(r"\d+/\d+", str(m["dataField"]))
        ]
        if patient["patient_status"] == "AC" and allergies and drugs and pressures:
            return {
                "row": patient,
                "allergy": allergies[0]["DESCRIPTION"],
                "drug": drugs[0]["BN"] or drugs[0]["GN"] or drugs[0]["customName"],
                "pressures": len(pressures),
            }
    raise AssertionError("the synthetic clinic has no fully charted patient")


def test_admin_runs_a_sync_and_a_clinician_sees_oscar_data_in_the_chart(
    server: LiveServer, browser: Any, clinic_rows: dict[str, list[dict[str, Any]]]
) -> None:
    page = signed_in(browser, server, "oscar.admin")
    page.locator("nav.sidebar a", has_text="OSCAR").click()
    page.wait_for_url(re.compile(r"/ui/page\?path="))
    frame = page.frame_locator("iframe.plugin-frame")
    frame.locator("#oscar > *:not([data-testid=loading])").first.wait_for()
    assert INSTANCE in frame.locator("[data-testid=summary]").inner_text(timeout=2000), (
        frame.locator("body").inner_text()
    )
    assert "No sync has run yet" in frame.locator("[data-testid=cursors]").inner_text()
    frame.locator("[data-testid=run-now]").click()
    assert "Sync started" in frame.locator("[data-testid=started]").inner_text()

    # the page follows the run until it ends
    last_status = frame.locator("[data-testid=runs] tr:nth-child(2) td:nth-child(3)")
    deadline = time.monotonic() + 240
    while last_status.count() == 0 or last_status.inner_text() == "running":
        assert time.monotonic() < deadline, "the sync did not finish"
        time.sleep(1)
    assert last_status.inner_text() == "ok", frame.locator("[data-testid=runs]").inner_text()
    cursors = frame.locator("[data-testid=cursors] tr", has_text="demographic").first
    assert re.search(r"\b60\b", cursors.inner_text()), "60 patients synced"
    dead = frame.locator("[data-testid=dead-letters]").inner_text()
    assert "77001" in dead and "99999 is not in fhirhub" in dead
    shot(page, "01-admin-page")

    # a clinician of the clinic sees the OSCAR patient's chart like any other
    expected = charted_patient(clinic_rows)
    ctx = mapping_context(OscarSettings(instance=INSTANCE))
    clinician = signed_in(browser, server, "dr.ames")
    clinician.goto(f"{server.base}/ui/patients/{ctx.patient_id(expected['row']['demographic_no'])}")
    clinician.wait_for_selector("body[data-chart-ready=true]")
    name = clinician.locator("#patient-name").inner_text()
    assert expected["row"]["last_name"] in name and expected["row"]["first_name"] in name
    assert expected["row"]["hin"] in clinician.locator("#panel-demographics").inner_text()
    assert expected["allergy"] in clinician.locator("#panel-allergies").inner_text()
    assert expected["drug"] in clinician.locator("#panel-medications").inner_text()
    chart = clinician.locator('#panel-vitals svg[data-chart="bp"]')
    assert chart.locator("circle.point").count() == 2 * expected["pressures"]
    shot(clinician, "02-chart")


def test_a_clinician_of_another_tenant_is_refused_and_sees_no_oscar_patient(
    server: LiveServer, browser: Any
) -> None:
    page = signed_in(browser, server, "dr.bell")
    token = page.evaluate("sessionStorage.getItem('fhirhub.token')")
    headers = {"Authorization": f"Bearer {token}"}
    assert page.request.get(f"{server.base}/plugins/oscar/status", headers=headers).status == 403
    assert page.request.post(f"{server.base}/plugins/oscar/sync", headers=headers).status == 403
    page.goto(f"{server.base}/ui/page?path=/plugins/oscar/ui/")
    frame = page.frame_locator("iframe.plugin-frame")
    assert "Not available" in frame.locator("[data-testid=refused]").inner_text()
    assert frame.locator("[data-testid=summary]").count() == 0
    shot(page, "03-other-tenant")
    page.goto(f"{server.base}/ui/patients")
    page.locator("#page-status").wait_for()
    assert page.locator("#patient-table tbody tr a").count() == 0
