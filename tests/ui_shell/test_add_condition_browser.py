"""Adding a condition from the patient chart, as a clinician does it, in Debian's Chromium
(Playwright) against ``fhirhub serve``: with authentication on, two tenants and ICD-10-CM's
diabetes codes loaded, the clinician types "diab", picks a type 2 diabetes code with the
keyboard and adds it; the Conditions panel shows it, the FHIR API holds it with its coding,
and a clinician of the other tenant does not see it. Then, on a hub without the terminology
plugin, the same form records the diagnosis as text and says that coded lookup is
unavailable. Screenshots go to ``tests/artifacts/ui_shell/``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fhirhub.core.access import SYSTEM, acting_as
from fhirhub.core.hub import build_hub
from fhirhub.core.settings import Settings
from fhirhub.fhir_store.tenancy import with_tenant
from fhirhub.plugins.security.clients import register_client
from fhirhub.plugins.security.state import security
from fhirhub.plugins.security.tenants import create_tenant
from fhirhub.plugins.security.users import create_user
from fhirhub.plugins.terminology import icd10cm
from fhirhub.plugins.terminology.service import service_of
from fhirhub.plugins.terminology.store import write_code_system
from fhirhub.sdk import update
from tests.conftest import LiveServer
from tests.plugins.security.conftest import APP_REDIRECT, PASSWORD, authorize_params, pkce_pair
from tests.plugins.terminology.conftest import subset
from tests.ui_shell.test_browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    TIMEOUT_MS,
    require_browser,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui_browser")]

ICD = "http://hl7.org/fhir/sid/icd-10-cm"


def patient(pid: str, family: str, tenant: str | None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "name": [{"family": family, "given": ["Test"]}],
        "birthDate": "1961-05-02",
    }
    if tenant:
        with_tenant(resource, tenant)
    return resource


@pytest.fixture(scope="module")
def coded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("add-condition")
    url = f"sqlite:///{folder / 'hub.db'}"
    hub = build_hub(Settings(db=url, data_dir=folder, auth="on"))  # type: ignore[call-arg]
    create_tenant(hub, "hospital-a", "Hospital A")
    create_tenant(hub, "clinic-b", "Clinic B")
    with acting_as(SYSTEM):
        update(hub, patient("a1", "Lindqvist", "hospital-a"))
    sec = security(hub)
    create_user(sec, "dr.grey", role="clinician", tenant="hospital-a", password=PASSWORD)
    create_user(sec, "dr.blue", role="clinician", tenant="clinic-b", password=PASSWORD)
    register_client(
        sec, "chart-app", name="Chart app", public=True, redirect_uris=[APP_REDIRECT],
        scopes="user/*.cruds",
    )  # fmt: skip
    # Type 2 diabetes (E11) and hypertension (I10) with their ancestors: a page of "diab"
    # matches then fits the list, as "type 2 diab" would over the whole of ICD-10-CM.
    write_code_system(service_of(hub).db, subset(icd10cm.from_package(), ("E11", "I10")))
    hub.close()
    live = LiveServer(url, folder, env={"FHIRHUB_AUTH": "on"}).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def text_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("add-condition-text")
    url = f"sqlite:///{folder / 'hub.db'}"
    live = LiveServer(url, folder, env={"FHIRHUB_PLUGINS": "-terminology"}).start()
    response = httpx.put(f"{live.fhir}/Patient/t1", json=patient("t1", "Textonly", None))
    assert response.status_code in (200, 201), response.text
    yield live
    live.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = require_browser()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


def new_page(browser: Any) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(viewport={"width": 1360, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    return context, page, errors


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def token_for(server: LiveServer, username: str) -> str:
    """The authorization code + PKCE flow over plain HTTP, as a client application signs in."""
    verifier, challenge = pkce_pair()
    params = authorize_params(challenge, "user/*.cruds", aud=server.fhir)
    with httpx.Client(base_url=server.base) as client:
        form = {**params, "username": username, "password": PASSWORD, "decision": "approve"}
        answer = client.post("/plugins/security/authorize", data=form)
        assert answer.status_code == 302, answer.text
        code = httpx.URL(answer.headers["location"]).params["code"]
        tokens = client.post(
            "/plugins/security/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": APP_REDIRECT,
                "client_id": params["client_id"],
                "code_verifier": verifier,
            },
        )
        assert tokens.status_code == 200, tokens.text
        return str(tokens.json()["access_token"])


def conditions_over_rest(server: LiveServer, token: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{server.fhir}/Condition",
        params={"patient": "Patient/a1"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", [])]


def test_a_clinician_adds_a_coded_condition_that_the_other_tenant_does_not_see(
    coded_server: LiveServer, browser: Any
) -> None:
    context, page, errors = new_page(browser)
    page.goto(f"{coded_server.base}/ui/patients/a1")
    page.wait_for_selector("input[name=username]")  # 401 -> sign in
    page.fill("input[name=username]", "dr.grey")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[value=approve]")
    page.wait_for_url(f"{coded_server.base}/ui/patients/a1")
    page.wait_for_selector("body[data-chart-ready=true]")
    panel = page.locator("#panel-conditions")
    assert "None recorded" in panel.inner_text()
    form = panel.locator("form[aria-label='Add condition']")
    form.locator("xpath=self::*[@data-coded='true']").wait_for()
    assert "Coded from ICD-10-CM" in form.inner_text()

    box = page.get_by_role("combobox", name="Add condition")
    box.press_sequentially("diab", delay=60)
    listbox = page.get_by_role("listbox")
    listbox.get_by_role("option").first.wait_for()
    assert box.get_attribute("aria-expanded") == "true"
    codes = listbox.get_by_role("option").evaluate_all("els => els.map(e => e.dataset.code)")
    wanted = next(c for c in codes if re.match(r"^E11\.\d+$", c))  # a type 2 diabetes code
    shot(page, "10-condition-typeahead")

    # Escape closes the list; the arrows reopen it and walk to the code; Enter chooses it.
    box.press("Escape")
    assert box.get_attribute("aria-expanded") == "false"
    for _ in range(codes.index(wanted) + 1):
        box.press("ArrowDown")
    assert box.get_attribute("aria-expanded") == "true"
    option = page.locator(f"#{box.get_attribute('aria-activedescendant')}")
    assert option.get_attribute("data-code") == wanted
    assert option.get_attribute("aria-selected") == "true"
    display = option.inner_text().removeprefix(wanted).strip()
    assert display.startswith("Type 2 diabetes mellitus"), display
    box.press("Enter")  # chooses
    assert form.get_attribute("data-chosen") == wanted
    assert box.input_value() == display
    box.press("Enter")  # submits
    form.locator("xpath=self::*[@data-saved]").wait_for()
    row = panel.locator("tbody tr", has_text=display)
    row.wait_for()
    assert "Active" in row.inner_text()
    assert panel.locator("h2 .badge").inner_text() == "1"
    shot(page, "11-condition-added")

    token = page.evaluate("sessionStorage.getItem('fhirhub.token')")
    [stored] = conditions_over_rest(coded_server, token)
    coding = stored["code"]["coding"][0]
    assert (coding["system"], coding["code"], coding["display"]) == (ICD, wanted, display)
    assert stored["clinicalStatus"]["coding"][0]["code"] == "active"
    assert stored["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert stored["subject"]["reference"] == "Patient/a1"
    assert stored["recordedDate"].startswith("20")

    # A server refusal is shown plainly: a code ICD-10-CM does not have (sent by hand).
    box.press_sequentially("diab", delay=40)
    listbox.get_by_role("option").first.wait_for()
    box.press("ArrowDown")

    def unknown_code(route: Any) -> None:
        sent = json.loads(route.request.post_data)
        sent["code"]["coding"][0]["code"] = "E11.999"
        route.continue_(post_data=json.dumps(sent))

    page.route("**/fhir/Condition", unknown_code)
    box.press("Enter")
    box.press("Enter")
    alert = form.get_by_role("alert")
    alert.wait_for()
    assert "Not saved" in alert.inner_text() and "E11.999" in alert.inner_text()
    page.unroute("**/fhir/Condition")
    context.close()
    # The browser logs the sign-in's 401 and the refused POST's 400; nothing else.
    assert [e for e in errors if not re.search(r"status of (400|401) ", e)] == [], errors

    # The other tenant's clinician sees nothing of it.
    other = token_for(coded_server, "dr.blue")
    assert conditions_over_rest(coded_server, other) == []


def test_without_the_terminology_plugin_the_form_records_text(
    text_server: LiveServer, browser: Any
) -> None:
    context, page, errors = new_page(browser)
    page.goto(f"{text_server.base}/ui/patients/t1")
    page.wait_for_selector("body[data-chart-ready=true]")
    form = page.locator("#panel-conditions form[aria-label='Add condition']")
    form.locator("xpath=self::*[@data-coded='false']").wait_for()
    assert "Coded lookup is unavailable (no terminology service)" in form.inner_text()
    box = page.get_by_role("combobox", name="Add condition")
    box.press_sequentially("Chest pain, atypical", delay=20)
    page.wait_for_timeout(400)  # past the debounce: no list appears
    assert box.get_attribute("aria-expanded") == "false"
    box.press("Enter")
    page.locator("#panel-conditions tbody tr", has_text="Chest pain, atypical").wait_for()
    shot(page, "12-condition-as-text")
    context.close()
    assert errors == [], errors
    bundle = httpx.get(f"{text_server.fhir}/Condition", params={"patient": "Patient/t1"}).json()
    [stored] = [e["resource"] for e in bundle["entry"]]
    assert stored["code"] == {"text": "Chest pain, atypical"}
