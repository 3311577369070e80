"""PV1 (+PV2) -> Encounter with Location and Practitioner participants (IG "PV1[Encounter]").

Encounter identity is the visit number (PV1-19), else the alternate visit id (PV1-50); with
neither, the encounter is identified by the message itself (one encounter per message).
"""

from __future__ import annotations

from typing import Any

from fhirhub.adapters.hl7.convert.context import Conversion
from fhirhub.adapters.hl7.convert.datatypes import codeable, hd_system
from fhirhub.adapters.hl7.convert.participants import location, practitioner
from fhirhub.adapters.hl7.convert.tables import (
    ENCOUNTER_CLASS,
    ENCOUNTER_STATUS_BY_EVENT,
    NULL_FLAVOR,
    V3_ACT_CODE,
    concept,
)
from fhirhub.adapters.hl7.parsing import Segment

PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
#: PV1 fields holding providers, with their v3 participation type (IG PV1 map).
PROVIDER_FIELDS = (
    (7, "ATND", "attender"),
    (8, "REF", "referrer"),
    (9, "CON", "consultant"),
    (17, "ADM", "admitter"),
)


def encounter_identifier(ctx: Conversion, pv1: Segment) -> dict[str, Any]:
    for number in (19, 50):
        value = pv1.get(number)
        if value:
            return {
                "system": hd_system(pv1, number, 4) or ctx.sender_system,
                "value": value,
                "type": concept("0203", "VN"),
            }
    return {
        "system": f"urn:fhirhub:hl7v2:visit:{ctx.patient_key}",
        "value": f"{ctx.message.control_id}",
    }


def convert_pv1(ctx: Conversion, pv1: Segment | None, *, status: str | None = None) -> str | None:
    if pv1 is None or ctx.patient is None:
        return None
    event = ctx.message.trigger_event or ctx.message.msh.get(9, 2)
    patient_class = pv1.get(2).upper()
    if patient_class in ("", "N", "U") and not pv1.get(3) and not pv1.get(19) and not pv1.get(44):
        return None  # an empty PV1 (ORU, SIU) says nothing about a visit
    identifier = encounter_identifier(ctx, pv1)
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "identifier": [identifier],
        "status": status or ENCOUNTER_STATUS_BY_EVENT.get(event, "unknown"),
        "class": _encounter_class(ctx, pv1, patient_class),
        "subject": {"reference": ctx.patient},
    }
    # An event that is not a status change (A08 update, A31...) says nothing about the
    # status: a stored encounter keeps its own (the update is otherwise applied).
    keep: tuple[str, ...] = ()
    if pv1.get(45) and not status:
        encounter["status"] = "finished"
    elif not status and event not in ENCOUNTER_STATUS_BY_EVENT:
        keep = ("status",)
    kind = codeable(pv1, 4, table="0007")
    if kind:
        encounter["type"] = [kind]
    service = codeable(pv1, 10)
    if service:
        encounter["serviceType"] = service
    start, end = ctx.date(pv1, 44), ctx.date(pv1, 45)
    if start or end:
        encounter["period"] = {k: v for k, v in (("start", start), ("end", end)) if v}
    places = []
    for number, state in (
        (3, "active"),
        (6, "completed"),
        (11, "planned"),
        (42, "planned"),
        (43, "completed"),
    ):
        where = location(ctx, pv1, number)
        if where:
            places.append({"location": where, "status": state})
    if places:
        encounter["location"] = places
    participants = []
    for number, part_code, part_display in PROVIDER_FIELDS:
        for rep in range(len(pv1.repetitions(number))):
            who = practitioner(ctx, pv1, number, rep)
            if who and "reference" in who:
                participants.append(
                    {
                        "type": [
                            {
                                "coding": [
                                    {
                                        "system": PARTICIPATION,
                                        "code": part_code,
                                        "display": part_display,
                                    }
                                ]
                            }
                        ],
                        "individual": who,
                    }
                )
    if participants:
        encounter["participant"] = participants
    hospitalization: dict[str, Any] = {}
    admit_source = codeable(pv1, 14, table="0023")
    if admit_source:
        hospitalization["admitSource"] = admit_source
    discharge = codeable(pv1, 36)
    if discharge:
        hospitalization["dischargeDisposition"] = discharge
    if hospitalization:
        encounter["hospitalization"] = hospitalization
    pv2 = ctx.message.first("PV2")
    if pv2 is not None:
        reason = codeable(pv2, 3)
        if reason:
            encounter["reasonCode"] = [reason]
    ctx.encounter = ctx.add(
        encounter,
        identifier={"system": identifier["system"], "value": identifier["value"]},
        upsert=ctx.owns_patient,
        keep=keep if ctx.owns_patient else (),
    )
    return ctx.encounter


def _encounter_class(ctx: Conversion, pv1: Segment, patient_class: str) -> dict[str, Any]:
    """PV1-2 by the IG's table 0004 map; anything the map lacks is UNK, with a warning."""
    found = ENCOUNTER_CLASS.get(patient_class)
    if found is not None:
        return {"system": V3_ACT_CODE, "code": found[0], "display": found[1]}
    if patient_class:
        ctx.warn(
            pv1,
            2,
            f"patient class {patient_class!r} has no encounter class in the v2-to-FHIR map; "
            "stored as unknown",
            code="103",
        )
    else:
        ctx.warn(pv1, 2, "patient class is empty (required); stored as unknown", code="101")
    return {"system": NULL_FLAVOR, "code": "UNK", "display": "unknown"}
