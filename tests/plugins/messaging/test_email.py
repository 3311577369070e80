"""Notifications by email, through a real SMTP server on loopback: who opted in gets the
email (once, with the notification's text and nothing else of the record), who did not gets
none, preferences are each user's own (two tenants), and an SMTP outage delays delivery
without doubling it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub, build_hub
from fhirhub.plugins.messaging import notify
from fhirhub.plugins.messaging.reminders import send_reminders
from fhirhub.sdk import acting_as, system_for, transaction
from tests.conftest import free_port, make_settings
from tests.plugins.messaging.conftest import HeaderAuthenticator, as_, message
from tests.plugins.messaging.smtp_receiver import SmtpReceiver
from tests.tenants import add_tenants

BOB = "bob@clinic-a.example"
CAROL = "carol@clinic-b.example"
PATIENT_NAME = "Secretpatient"


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def hub(sqlite_url: str, tmp_path: Path, smtp_port: int) -> Iterator[Hub]:
    messaging = {
        "smtp_url": f"smtp://127.0.0.1:{smtp_port}",
        "mail_from": "hub@clinic.example",
        "email_check_s": 0.1,
        "email_retry_s": 0.2,
    }
    settings = make_settings(
        sqlite_url,
        tmp_path,
        auth="on",
        listeners=False,
        plugins="-mpi",
        plugin_config={"messaging": messaging},
    )
    hub = build_hub(settings, extra_plugins=[HeaderAuthenticator()])
    add_tenants(hub, "org-a", "org-b")
    yield hub
    hub.close()


@pytest.fixture
def bob_has_an_email(hub: Hub, practitioners: dict[str, str]) -> None:
    with acting_as(system_for("org-a")), transaction(hub) as tx:
        bob = tx.read("Practitioner", practitioners["bob"].split("/")[1])
        bob["telecom"] = [{"system": "phone", "value": "555"}, {"system": "email", "value": BOB}]
        tx.update(bob)


def preferences(client: TestClient, caller: str, **params: str) -> dict[str, Any]:
    response = client.get("/plugins/messaging/api/preferences", headers=as_(caller), params=params)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def choose(client: TestClient, user: str, body: Any) -> Any:
    return client.put("/plugins/messaging/api/preferences", headers=as_(user), json=body)


def wait_for(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_opted_in_users_get_the_notification_by_email_and_others_none(
    hub: Hub,
    client: TestClient,
    practitioners: dict[str, str],
    smtp_port: int,
    bob_has_an_email: None,
) -> None:
    assert preferences(client, "bob")["effective_address"] == BOB
    assert choose(client, "bob", {"notifications": True}).status_code == 200
    start = datetime.now(UTC) + timedelta(hours=2)
    with acting_as(system_for("org-a")), transaction(hub) as tx:
        patient = tx.create(
            {"resourceType": "Patient", "name": [{"family": PATIENT_NAME, "given": ["Jo"]}]}
        ).version.reference
        tx.create(
            {
                "resourceType": "Appointment",
                "status": "booked",
                "description": "Wound check",
                "start": start.isoformat(timespec="seconds"),
                "end": (start + timedelta(minutes=20)).isoformat(timespec="seconds"),
                "participant": [
                    {"actor": {"reference": practitioners["bob"]}, "status": "accepted"},
                    {"actor": {"reference": practitioners["alice"]}, "status": "accepted"},
                    {"actor": {"reference": patient}, "status": "accepted"},
                ],
            }
        )
    with SmtpReceiver(smtp_port) as smtp:
        notify(hub, "bob", "notification", "Lab system down at 22:00")
        notify(hub, "alice", "notification", "Alice did not ask for email")
        assert send_reminders(hub, lead_s=86400) == 1  # to bob, alice and the patient
        # A message from a colleague: bob chose notifications only.
        sent = client.post(
            "/fhir/Communication",
            json=message(practitioners["bob"], "Coffee?"),
            headers=as_("alice"),
        )
        assert sent.status_code == 201
        wait_for(lambda: len(smtp.received) >= 2)
        hub.dispatcher.wait_idle()
        time.sleep(0.5)  # a few more schedule runs: nothing else may arrive
        received = smtp.received
    assert len(received) == 2, [r.message["Subject"] for r in received]
    by_subject = {r.message["Subject"]: r for r in received}
    assert set(by_subject) == {"[fhirhub] Notification", "[fhirhub] Reminder"}
    for mail in received:
        assert mail.recipients == [BOB] and mail.message["To"] == BOB
        assert mail.message["From"] == "hub@clinic.example"
        body = mail.message.get_content()
        assert "/ui/page?path=/plugins/messaging/page/#thread=" in body
        assert PATIENT_NAME not in body and patient not in body and "Patient" not in body
    assert "Lab system down at 22:00" in by_subject["[fhirhub] Notification"].message.get_content()
    reminder = by_subject["[fhirhub] Reminder"].message.get_content()
    assert "Reminder: appointment at" in reminder and "Wound check" in reminder
    delivery = preferences(client, "bob")["delivery"]
    assert (delivery["sent"], delivery["pending"], delivery["failed"]) == (2, 0, 0)
    assert preferences(client, "alice")["delivery"]["sent"] == 0


def test_messages_are_emailed_only_when_chosen(
    hub: Hub,
    client: TestClient,
    practitioners: dict[str, str],
    smtp_port: int,
    bob_has_an_email: None,
) -> None:
    chosen = choose(client, "bob", {"messages": True}).json()
    assert (chosen["notifications"], chosen["messages"]) == (False, True)
    with SmtpReceiver(smtp_port) as smtp:
        notify(hub, "bob", "notification", "Not by email")
        client.post(
            "/fhir/Communication",
            json=message(practitioners["bob"], "Can you see Mr Smith?"),
            headers=as_("alice"),
        )
        wait_for(lambda: smtp.received)
        hub.dispatcher.wait_idle()
        time.sleep(0.5)
        received = smtp.received
    assert len(received) == 1
    assert received[0].message["Subject"] == "[fhirhub] New message from Alice"
    assert "Can you see Mr Smith?" in received[0].message.get_content()


def test_preferences_are_the_callers_own_in_each_tenant(
    hub: Hub,
    client: TestClient,
    practitioners: dict[str, str],
    smtp_port: int,
    bob_has_an_email: None,
) -> None:
    assert choose(client, "bob", {"notifications": True}).status_code == 200
    # carol (org-b) sees and changes only her own, whatever she names.
    mine = preferences(client, "carol", practitioner=practitioners["bob"], user="bob")
    assert (mine["notifications"], mine["effective_address"]) == (False, None)
    for body in (
        {"user": "bob", "notifications": False},
        {"practitioner": practitioners["bob"], "notifications": False},
    ):
        refused = choose(client, "carol", body)
        assert refused.status_code == 400
        assert refused.json()["resourceType"] == "OperationOutcome"
        assert "only for yourself" in refused.text
    assert choose(client, "carol", {"notifications": "yes"}).status_code == 400
    assert choose(client, "carol", {"address": "not an address"}).status_code == 400
    not_json = client.put(
        "/plugins/messaging/api/preferences", headers=as_("carol"), content=b"{notifications"
    )
    assert not_json.status_code == 400
    assert not_json.json()["resourceType"] == "OperationOutcome"
    saved = choose(client, "carol", {"notifications": True, "address": CAROL}).json()
    assert saved["effective_address"] == CAROL
    bob = preferences(client, "bob")
    assert (bob["notifications"], bob["address"], bob["effective_address"]) == (True, None, BOB)
    with SmtpReceiver(smtp_port) as smtp:
        notify(hub, "carol", "notification", "For org-b")
        notify(hub, "bob", "notification", "For org-a")
        wait_for(lambda: len(smtp.received) >= 2)
        hub.dispatcher.wait_idle()
        time.sleep(0.3)
        received = {r.recipients[0]: r.message.get_content() for r in smtp.received}
    assert len(smtp.received) == 2
    assert "For org-b" in received[CAROL] and "For org-a" in received[BOB]
    # Delivery status is each user's own too.
    assert preferences(client, "carol")["delivery"]["sent"] == 1
    assert preferences(client, "bob")["delivery"]["sent"] == 1


def test_smtp_down_then_up_is_delivered_once(
    hub: Hub,
    client: TestClient,
    smtp_port: int,
    bob_has_an_email: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    choose(client, "bob", {"notifications": True})
    with caplog.at_level(logging.ERROR, logger="fhirhub.messaging.email"):
        notify(hub, "bob", "notification", "Sent while the mail server was down")
        failing = wait_for(lambda: preferences(client, "bob")["delivery"]["last_error"])
    assert "SMTP failed" in failing["error"] and failing["attempts"] >= 1
    assert failing["status"] == "pending"
    assert "not sent" in caplog.text and BOB in caplog.text and "retrying" in caplog.text
    with SmtpReceiver(smtp_port) as smtp:
        wait_for(lambda: smtp.received)
        time.sleep(1.0)  # several more schedule runs and retry intervals
        received = smtp.received
    assert len(received) == 1
    assert "Sent while the mail server was down" in received[0].message.get_content()
    delivery = preferences(client, "bob")["delivery"]
    assert (delivery["sent"], delivery["pending"], delivery["last_error"]) == (1, 0, None)


def test_no_email_address_is_reported_not_retried(
    hub: Hub, client: TestClient, smtp_port: int
) -> None:
    choose(client, "alice", {"notifications": True})
    assert preferences(client, "alice")["effective_address"] is None
    with SmtpReceiver(smtp_port) as smtp:
        notify(hub, "alice", "notification", "Nowhere to send")
        hub.dispatcher.wait_idle()
        time.sleep(0.3)
        assert smtp.received == []
    delivery = preferences(client, "alice")["delivery"]
    assert delivery["failed"] == 1 and "No email address" in delivery["last_error"]["error"]


def test_the_address_can_come_from_a_person_linked_to_the_practitioner(
    hub: Hub, client: TestClient, practitioners: dict[str, str]
) -> None:
    with acting_as(system_for("org-a")), transaction(hub) as tx:
        tx.create(
            {
                "resourceType": "Person",
                "telecom": [{"system": "email", "value": "alice@home.example"}],
                "link": [{"target": {"reference": practitioners["alice"]}}],
            }
        )
    assert preferences(client, "alice")["effective_address"] == "alice@home.example"
    chosen = choose(client, "alice", {"address": "alice@clinic-a.example"}).json()
    assert chosen["effective_address"] == "alice@clinic-a.example"
    assert choose(client, "alice", {"address": None}).json()["address"] is None
