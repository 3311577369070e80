"""``appointment`` -> Appointment (+ Encounter when the visit happened), or Slot for a block.

OSCAR stores a date, a start time and the *last minute* of the booking as ``end_time``
(a 15-minute visit at 09:00 ends at ``09:14:00``), all in the clinic's local time; the FHIR
end is the minute after. ``demographic_no = 0`` (or NULL) is a block of the provider's time
("lunch", "admin"), not a patient visit: a Slot with status ``busy-unavailable`` (R4 §11.6)
on the provider's Schedule.
"""

from __future__ import annotations

from collections.abc import Container
from datetime import datetime, timedelta
from typing import Any

from fhirhub.adapters.oscar import codes
from fhirhub.adapters.oscar.dates import (
    MappingError,
    fhir_instant,
    local_datetime,
    parse_date,
    parse_time,
)
from fhirhub.adapters.oscar.mapping.context import MappingContext
from fhirhub.adapters.oscar.mapping.values import text
from fhirhub.adapters.oscar.model import Appointment, DeletedAppointment


def _period(record: Appointment, ctx: MappingContext) -> tuple[str, str]:
    day = parse_date(record.appointment_date, ctx.zone, field="appointment_date")
    if day is None:
        raise MappingError(f"appointment {record.appointment_no} has no appointment_date")
    start = parse_time(record.start_time, field="start_time")
    end = parse_time(record.end_time, field="end_time")
    if start is None:
        raise MappingError(f"appointment {record.appointment_no} has no start_time")
    begin = datetime.combine(day, start)
    finish = datetime.combine(day, end) + timedelta(minutes=1) if end is not None else begin
    if finish < begin:
        raise MappingError(
            f"appointment {record.appointment_no} ends ({end}) before it starts ({start})"
        )
    return local_datetime(day, start, ctx.zone), local_datetime(
        finish.date(), finish.time(), ctx.zone
    )


def is_block(record: Appointment) -> bool:
    return not record.demographic_no


def appointment(
    record: Appointment, ctx: MappingContext, known_providers: Container[str] | None
) -> list[dict[str, Any]]:
    start, end = _period(record, ctx)
    provider = text(record.provider_no)
    if is_block(record):
        return _slot(record, ctx, start, end, provider, known_providers)
    raw_status = text(record.status) or "t"
    status = codes.APPOINTMENT_STATUS.get(raw_status[0])
    if status is None:
        raise MappingError(f"appointment {record.appointment_no}: unknown status {raw_status!r}")
    resource: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": ctx.linked_id("appointment", record.key, "ap"),
        "meta": ctx.meta(),
        "identifier": [ctx.identifier("appointment", record.appointment_no)],
        "status": status,
        "start": start,
        "end": end,
        "minutesDuration": max(
            1,
            int(
                (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() // 60
            ),
        ),
        "participant": [
            {
                "actor": ctx.patient_ref(record.demographic_no or 0),
                "required": "required",
                "status": "accepted",
            }
        ],
    }
    practitioner = ctx.practitioner_ref(provider, known_providers)
    if practitioner:
        resource["participant"].append(
            {"actor": practitioner, "required": "required", "status": "accepted"}
        )
    if text(record.type):
        resource["appointmentType"] = {"text": text(record.type)}
    if text(record.reason):
        resource["reasonCode"] = [{"text": text(record.reason)}]
    if text(record.notes):
        resource["comment"] = text(record.notes)
    if text(record.location):
        resource["description"] = f"Location: {text(record.location)}"
    created = fhir_instant(record.createdatetime, ctx.zone, field="createdatetime")
    if created:
        resource["created"] = created[:10]
    out = [resource]
    encounter_status = codes.ENCOUNTER_STATUS.get(status)
    if encounter_status:
        encounter: dict[str, Any] = {
            "resourceType": "Encounter",
            "id": ctx.resource_id("enc", record.appointment_no),
            "meta": ctx.meta(),
            "identifier": [ctx.identifier("appointment", record.appointment_no)],
            "status": encounter_status,
            "class": {"system": codes.ACT_CODE, "code": "AMB", "display": "ambulatory"},
            "subject": ctx.patient_ref(record.demographic_no or 0),
            "appointment": [{"reference": f"Appointment/{resource['id']}"}],
            "period": {"start": start, **({"end": end} if encounter_status == "finished" else {})},
        }
        if practitioner:
            encounter["participant"] = (
                [{"individual": practitioner}] if "reference" in practitioner else []
            )
            if not encounter["participant"]:
                del encounter["participant"]
        if text(record.reason):
            encounter["reasonCode"] = [{"text": text(record.reason)}]
        out.append(encounter)
    return out


def _slot(
    record: Appointment,
    ctx: MappingContext,
    start: str,
    end: str,
    provider: str | None,
    known: Container[str] | None,
) -> list[dict[str, Any]]:
    """A blocked slot on the provider's Schedule (Slot.schedule is 1..1, so the Schedule is
    written with it; an unchanged Schedule is a no-op)."""
    key = provider or "clinic"
    schedule: dict[str, Any] = {
        "resourceType": "Schedule",
        "id": ctx.resource_id("sch", key),
        "meta": ctx.meta(),
        "active": True,
        "actor": [ctx.practitioner_ref(provider, known) or {"display": "Clinic"}],
    }
    comment = " - ".join(
        t for t in (text(record.name), text(record.notes), text(record.reason)) if t
    )
    slot: dict[str, Any] = {
        "resourceType": "Slot",
        "id": ctx.resource_id("slot", record.appointment_no),
        "meta": ctx.meta(),
        "identifier": [ctx.identifier("appointment", record.appointment_no)],
        "schedule": {"reference": f"Schedule/{schedule['id']}"},
        "status": "busy-unavailable",
        "start": start,
        "end": end,
    }
    if comment:
        slot["comment"] = comment
    return [schedule, slot]


def cancelled(
    current: dict[str, Any], record: DeletedAppointment, ctx: MappingContext
) -> dict[str, Any]:
    """The stored Appointment or Slot of an appointment OSCAR deleted: an Appointment becomes
    ``entered-in-error`` (deleted rather than cancelled: OSCAR cancels with status C), a Slot
    becomes ``entered-in-error`` as well."""
    resource = {k: v for k, v in current.items() if k != "meta"}
    resource["meta"] = ctx.meta()
    resource["status"] = "entered-in-error"
    return resource
