"""End to end, as a ward sees it: a bedside monitor's HL7 ORU^R01 with a full set of vital
signs arrives over MLLP; the hub scores it (RiskAssessment, NEWS2 19: high), raises the alert
(Flag, Task) and escalates it while nobody answers; the charge nurse's open dashboard (Chromium)
shows the alert live and acknowledging it there stops the escalation."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from fhirhub.adapters.hl7.mllp_server import MllpServer, frame
from fhirhub.core.hub import Hub
from fhirhub.plugins.vitals.alerts import escalate_due
from fhirhub.plugins.vitals.service import service_of
from fhirhub.sdk import SYSTEM, acting_as, search
from tests.conftest import free_port
from tests.plugins.vitals.conftest import settle
from tests.ui_shell.test_browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, require_browser

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui_browser")]


def oru(control: str, mrn: str, when: str) -> bytes:
    return (
        f"MSH|^~\\&|MONITOR|WARD7|FHIRHUB|HUB|{when}||ORU^R01|{control}|P|2.5.1|||AL|NE\r"
        f"PID|1||{mrn}^^^GOODHOSP^MR||Vital^Vera||19500101|F\r"
        f"OBR|1|||85353-1^Vital signs panel^LN|||{when}\r"
        f"OBX|1|NM|9279-1^Respiratory rate^LN||26|/min^/min^UCUM|||||F|||{when}\r"
        f"OBX|2|NM|59408-5^SpO2^LN||90|%^%^UCUM|||||F|||{when}\r"
        f"OBX|3|NM|3151-8^Inhaled oxygen flow rate^LN||4|L/min^L/min^UCUM|||||F|||{when}\r"
        f"OBX|4|NM|8480-6^Systolic blood pressure^LN||88|mm[Hg]^mm[Hg]^UCUM|||||F|||{when}\r"
        f"OBX|5|NM|8867-4^Heart rate^LN||135|/min^/min^UCUM|||||F|||{when}\r"
        f"OBX|6|CWE|67775-7^Level of responsiveness^LN||300202002^Responds to voice^SCT"
        f"||||||F|||{when}\r"
        f"OBX|7|NM|8310-5^Body temperature^LN||39.5|Cel^Cel^UCUM|||||F|||{when}\r"
    ).encode()


def send(port: int, message: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(frame(message))
        data = b""
        while not data.endswith(b"\x1c\r"):
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
    return data


@pytest.fixture
def served(hub: Hub) -> Iterator[tuple[str, MllpServer]]:
    import uvicorn

    from fhirhub.core.http.app import create_app

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(hub=hub), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    mllp = MllpServer(hub, "127.0.0.1", 0, frame_timeout=5.0).start()
    yield base, mllp
    mllp.stop()
    server.should_exit = True
    thread.join(timeout=10)


def wait_for(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_oru_over_mllp_to_alert_escalation_and_browser_acknowledgment(
    hub: Hub, served: tuple[str, MllpServer]
) -> None:
    sync_playwright = require_browser()
    base, mllp = served
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    ack = send(mllp.port, oru("VIT-1", "MRN-V1", now))
    assert b"MSA|AA|VIT-1" in ack or b"MSA|CA|VIT-1" in ack, ack
    settle(hub)
    with acting_as(SYSTEM):
        (patient,) = search(hub, "Patient", {"identifier": "MRN-V1"})
        subject = f"Patient/{patient['id']}"
        assessments = search(hub, "RiskAssessment", {"subject": subject})
        news2 = [a for a in assessments if a["method"]["text"] == "NEWS2"]
        assert news2[0]["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] == "high"
        flags = search(hub, "Flag", {"subject": subject, "status": "active"})
        assert any(f["code"]["coding"][0]["code"] == "news2-alert" for f in flags)
        (task,) = [
            t
            for t in search(hub, "Task", {"subject": subject})
            if t["code"]["coding"][0]["code"] == "news2-response"
        ]
    assert task["status"] == "requested"

    service = service_of(hub)
    escalate_due(service)  # unanswered: on to the charge nurse

    def current_task() -> dict[str, Any]:
        with acting_as(SYSTEM):
            (found,) = search(hub, "Task", {"_id": task["id"]})
        return found

    assert current_task()["owner"] == {"display": "charge-nurse"}

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        context = browser.new_context(extra_http_headers={"X-Test-Caller": "charge-nurse"})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{base}/plugins/vitals/ward/")
        page.wait_for_selector("#live[data-state=live]")
        row = page.locator("#board tr").first
        assert "19" in row.inner_text()
        page.locator("#alerts li", has_text="NEWS2").locator("button.ack").click()
        page.wait_for_selector("#alerts li.acknowledged")

        # A second patient's ORU while the page is open arrives live (no reload).
        send(mllp.port, oru("VIT-2", "MRN-V2", datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")))
        page.wait_for_selector("body[data-alert-events]")
        page.wait_for_selector("#board tr:nth-child(2)")
        browser.close()

    acknowledged = current_task()
    assert acknowledged["status"] == "accepted"
    assert acknowledged["owner"]["display"] == "user:charge-nurse"
    escalate_due(service)  # acknowledged: no further step for the NEWS2 alert ...
    after = current_task()
    assert after["meta"]["versionId"] == acknowledged["meta"]["versionId"]
    assert after["owner"]["display"] == "user:charge-nurse"
    with acting_as(SYSTEM):  # ... while the unanswered qSOFA alert goes on up the chain
        (sepsis,) = [
            t
            for t in search(hub, "Task", {"subject": subject})
            if t["code"]["coding"][0]["code"] == "qsofa-response"
        ]
    assert sepsis["owner"] == {"display": "rapid-response-team"}
