"""Messages between users: sent in one's own name, threads, unread counts, read receipts,
live delivery to an open stream, tenant isolation; reminders and ``fhirhub notify``."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub
from fhirhub.plugins.messaging import notify
from fhirhub.plugins.messaging.reminders import send_reminders
from fhirhub.sdk import acting_as, system_for, transaction, validation_issues
from tests.plugins.messaging.conftest import as_, message


def send(client: TestClient, sender: str, resource: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/fhir/Communication", json=resource, headers=as_(sender))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def mailbox(client: TestClient, name: str) -> dict[str, Any]:
    response = client.get("/plugins/messaging/api/mailbox", headers=as_(name))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_a_thread_with_unread_counts_and_read_receipts(
    client: TestClient, practitioners: dict[str, str]
) -> None:
    first = send(client, "alice", message(practitioners["bob"], "Can you see Mr Smith?"))
    assert first["sender"] == {"reference": practitioners["alice"]}  # filled in
    assert validation_issues(first) == []
    assert mailbox(client, "bob")["unread"] == 1
    assert mailbox(client, "alice")["unread"] == 0
    read = client.post(
        f"/plugins/messaging/api/messages/{first['id']}/read", headers=as_("bob")
    ).json()
    assert read["status"] == "completed" and "received" in read
    assert mailbox(client, "bob")["unread"] == 0
    reply = message(
        practitioners["alice"],
        "On my way",
        inResponseTo=[{"reference": f"Communication/{first['id']}"}],
    )
    send(client, "bob", reply)
    threads = mailbox(client, "alice")["threads"]
    assert len(threads) == 1
    assert [m["payload"][0]["contentString"] for m in threads[0]["messages"]] == [
        "Can you see Mr Smith?",
        "On my way",
    ]
    # Only a recipient records a receipt.
    refused = client.post(
        f"/plugins/messaging/api/messages/{first['id']}/read", headers=as_("alice")
    )
    assert refused.status_code == 403


def test_no_one_sends_in_anothers_name(client: TestClient, practitioners: dict[str, str]) -> None:
    forged = message(practitioners["bob"], "I am Bob", sender={"reference": practitioners["bob"]})
    response = client.post("/fhir/Communication", json=forged, headers=as_("alice"))
    assert response.status_code == 403


def test_other_tenants_see_nothing(client: TestClient, practitioners: dict[str, str]) -> None:
    sent = send(client, "alice", message(practitioners["bob"], "org-a only"))
    assert mailbox(client, "carol")["unread"] == 0
    assert client.get(f"/fhir/Communication/{sent['id']}", headers=as_("carol")).status_code == 404
    response = client.post(
        f"/plugins/messaging/api/messages/{sent['id']}/read", headers=as_("carol")
    )
    assert response.status_code in (403, 404)
    assert client.get("/plugins/messaging/api/mailbox").status_code == 401


def test_an_open_stream_hears_a_new_message_within_a_second(
    client: TestClient, practitioners: dict[str, str]
) -> None:
    heard: list[float] = []
    ready = threading.Event()

    def listen() -> None:
        with client.stream("GET", "/plugins/messaging/api/stream", headers=as_("bob")) as stream:
            for line in stream.iter_lines():
                if line.startswith(": connected"):
                    ready.set()
                if line.startswith("event: message"):
                    heard.append(time.monotonic())
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert ready.wait(10)
    sent_at = time.monotonic()
    send(client, "alice", message(practitioners["bob"], "Live?"))
    listener.join(timeout=10)
    assert heard, "the open stream heard nothing"
    # Pushed on commit, not polled (the poll is 1 s): well under a second on an idle machine;
    # the bound leaves room for a test machine running other suites alongside.
    assert heard[0] - sent_at < 3.0


def test_appointment_reminders_are_sent_once(hub: Hub, practitioners: dict[str, str]) -> None:
    start = datetime.now(UTC) + timedelta(hours=2)
    with acting_as(system_for("org-a")), transaction(hub) as tx:
        patient = tx.create({"resourceType": "Patient", "name": [{"family": "Smith"}]})
        tx.create(
            {
                "resourceType": "Appointment",
                "status": "booked",
                "start": start.isoformat(timespec="seconds"),
                "end": (start + timedelta(minutes=20)).isoformat(timespec="seconds"),
                "participant": [
                    {"actor": {"reference": practitioners["bob"]}, "status": "accepted"},
                    {"actor": {"reference": patient.version.reference}, "status": "accepted"},
                ],
            }
        )
    assert send_reminders(hub, lead_s=3600) == 0  # not yet within an hour
    assert send_reminders(hub, lead_s=86400) == 1
    assert send_reminders(hub, lead_s=86400) == 0  # never twice


def test_notify_command(
    hub: Hub, practitioners: dict[str, str], sqlite_url: str, tmp_path: Path
) -> None:
    sent = notify(hub, "bob", "notification", "Lab system down at 22:00")
    assert sent["recipient"] == practitioners["bob"]
    hub.close()
    result = subprocess.run(
        [sys.executable, "-m", "fhirhub.core.cli", "notify", "bob", "notification", "Back up"]
        + ["--db", sqlite_url],
        env={**os.environ, "FHIRHUB_DATA_DIR": str(tmp_path), "FHIRHUB_PLUGINS": "-mpi"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "sent to Practitioner/" in result.stdout
