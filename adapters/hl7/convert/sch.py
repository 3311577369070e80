"""SCH (+AIS/AIG/AIL/AIP) -> Appointment (IG "SCH[Appointment]")."""

from __future__ import annotations

from typing import Any

from fhirhub.adapters.hl7.convert.context import Conversion
from fhirhub.adapters.hl7.convert.datatypes import codeable, decimal, entity_identifier
from fhirhub.adapters.hl7.convert.participants import location, practitioner
from fhirhub.adapters.hl7.convert.tables import APPOINTMENT_STATUS
from fhirhub.adapters.hl7.parsing import Segment

#: Minutes per duration unit (SCH-10 / AIS-11 CNE units).
MINUTES = {"MIN": 1, "M": 1, "S": 1 / 60, "H": 60, "HR": 60, "D": 1440}


def convert_sch(ctx: Conversion, sch: Segment) -> str | None:
    identifier = entity_identifier(sch, 1) or entity_identifier(sch, 2)
    if identifier is None:
        identifier = {"value": f"{ctx.message.control_id}-SCH"}
    identifier.setdefault("system", ctx.sender_system)
    event = ctx.message.trigger_event
    appointment: dict[str, Any] = {
        "resourceType": "Appointment",
        "identifier": [identifier],
        "status": APPOINTMENT_STATUS.get(event, "booked"),
        "participant": [],
    }
    reason = codeable(sch, 6)
    if reason:
        appointment["reasonCode"] = [reason]
    kind = codeable(sch, 8)
    if kind:
        appointment["appointmentType"] = kind
    service = codeable(sch, 7)
    if service:
        appointment["serviceType"] = [service]
    # Timing: TQ1-7/8 (v2.5+), else the first service's AIS-4, else SCH-11.4/.5 (the TQ data
    # type, withdrawn in v2.7 but still sent).
    start = end = None
    tq1 = ctx.message.first("TQ1")
    if tq1 is not None:
        start, end = ctx.date(tq1, 7), ctx.date(tq1, 8)
    ais = ctx.message.first("AIS")
    if not start and ais is not None:
        start = ctx.date(ais, 4)
    if not start:
        start, end = ctx.date(sch, 11, 4), ctx.date(sch, 11, 5)
    duration = decimal(sch.get(9))
    if start:
        appointment["start"] = start
        if end:
            appointment["end"] = end
    if duration is not None and duration > 0:
        appointment["minutesDuration"] = max(
            1, int(duration * MINUTES.get(sch.get(10, 1).upper(), 1))
        )
    if ais is not None:
        service_type = codeable(ais, 3)
        if service_type:
            appointment.setdefault("serviceType", [service_type])
    comment = sch.get(7, 2)
    if comment:
        appointment["description"] = comment
    if ctx.patient:
        appointment["participant"].append(
            {"actor": {"reference": ctx.patient}, "status": "accepted"}
        )
    for aip in ctx.message.all("AIP"):
        who = practitioner(ctx, aip, 3)
        if who:
            appointment["participant"].append(
                {"actor": who, "status": "accepted"}
                if "reference" in who
                else {"actor": who, "status": "needs-action"}
            )
    for ail in ctx.message.all("AIL"):
        where = location(ctx, ail, 3)
        if where:
            appointment["participant"].append({"actor": where, "status": "accepted"})
    for number in (16, 20):
        who = practitioner(ctx, sch, number)
        if who and "reference" in who:
            appointment["participant"].append({"actor": who, "status": "accepted"})
    if not appointment["participant"]:
        appointment["participant"] = [
            {"status": "needs-action", "actor": {"display": "unspecified"}}
        ]
    # NTE after SCH or a resource segment (AIS/AIG/AIL/AIP, TQ1): Appointment.comment
    notes = [
        note["text"]
        for segment in ctx.message.segments
        if segment.name in ("SCH", "TQ1", "RGS", "AIS", "AIG", "AIL", "AIP")
        for note in ctx.notes(segment)
    ]
    if notes:
        appointment["comment"] = "\n".join(notes)
    match = {"system": identifier["system"], "value": identifier["value"]}
    return ctx.add(appointment, identifier=match, upsert=True)
