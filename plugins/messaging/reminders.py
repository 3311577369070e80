"""Appointment reminders: for each booked Appointment starting within the lead time, one
``Communication`` (category ``reminder``) to its practitioners and patient, about the
patient, based on the Appointment's ``CommunicationRequest``-free path: the reminder is keyed
by an identifier (appointment and start), so a schedule that runs again, or in another
process after a restart, sends nothing twice."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fhirhub.plugins.messaging.messages import CATEGORY_SYSTEM, now_instant
from fhirhub.sdk import SYSTEM, Hub, acting_as, search, system_for, tenant_of, transaction

REMINDER_SYSTEM = "urn:fhirhub:appointment-reminder"
RECIPIENT_TYPES = ("Practitioner", "PractitionerRole", "CareTeam", "Patient", "RelatedPerson")


def _instant(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def due_appointments(hub: Hub, lead_s: float, now: float | None = None) -> list[dict[str, Any]]:
    now = time.time() if now is None else now
    with acting_as(SYSTEM):
        return search(
            hub,
            "Appointment",
            [
                ("status", "booked"),
                ("date", f"ge{_instant(now)}"),
                ("date", f"le{_instant(now + lead_s)}"),
                ("_count", "500"),
            ],
        )


def reminder_for(appointment: dict[str, Any]) -> dict[str, Any] | None:
    actors = [
        p["actor"]["reference"]
        for p in appointment.get("participant", ())
        if (p.get("actor") or {}).get("reference", "").split("/")[0] in RECIPIENT_TYPES
        and p.get("status") != "declined"
    ]
    if not actors:
        return None
    patient = next((a for a in actors if a.startswith("Patient/")), None)
    start = appointment.get("start", "")
    text = f"Reminder: appointment at {start}"
    if appointment.get("description"):
        text += f": {appointment['description']}"
    reminder: dict[str, Any] = {
        "resourceType": "Communication",
        "identifier": [{"system": REMINDER_SYSTEM, "value": f"{appointment['id']}@{start}"}],
        "status": "in-progress",
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": "reminder"}]}],
        "sent": now_instant(),
        "recipient": [{"reference": a} for a in actors],
        "about": [{"reference": f"Appointment/{appointment['id']}"}],
        "payload": [{"contentString": text}],
    }
    if patient:
        reminder["subject"] = {"reference": patient}
    return reminder


def send_reminders(hub: Hub, lead_s: float, now: float | None = None) -> int:
    """Create the reminders due now; the number created (existing ones are not counted)."""
    created = 0
    for appointment in due_appointments(hub, lead_s, now):
        reminder = reminder_for(appointment)
        if reminder is None:
            continue
        key = reminder["identifier"][0]
        with acting_as(system_for(tenant_of(appointment))), transaction(hub) as tx:
            criteria = "identifier=" + quote(f"{key['system']}|{key['value']}", safe="")
            result = tx.create(reminder, if_none_exist=criteria)
            created += int(result.created)
    return created
