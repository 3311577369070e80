"""DG1 -> Condition (IG "DG1[Condition]"): code DG1-3, onset DG1-5, diagnosis type DG1-6."""

from __future__ import annotations

from typing import Any

from fhirhub.adapters.hl7.convert.context import Conversion
from fhirhub.adapters.hl7.convert.datatypes import codeable
from fhirhub.adapters.hl7.convert.tables import concept
from fhirhub.adapters.hl7.parsing import Segment

CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
VERIFICATION_BY_TYPE = {"A": "provisional", "W": "provisional", "F": "confirmed"}


def convert_dg1(ctx: Conversion, dg1: Segment, index: int) -> str | None:
    code = codeable(dg1, 3)
    if code is None and dg1.get(4):
        code = {"text": dg1.get(4)}
    if code is None or ctx.patient is None:
        return None
    value = dg1.get(20) or dg1.get(3, 1) or dg1.get(4)
    identifier = {"system": f"urn:fhirhub:hl7v2:diagnosis:{ctx.patient_key}", "value": value}
    condition: dict[str, Any] = {
        "resourceType": "Condition",
        "identifier": [identifier],
        "subject": {"reference": ctx.patient},
        "code": code,
        "category": [{"coding": [{"system": CATEGORY, "code": "encounter-diagnosis"}]}],
    }
    # DG1-6 diagnosis type (table 0052: A admitting, W working, F final) is kept as a
    # category; a working or admitting diagnosis is provisional, a final one confirmed.
    kind = dg1.get(6, 1).upper()
    if kind:
        condition["category"].append(concept("0052", kind))
        verification = VERIFICATION_BY_TYPE.get(kind)
        if verification:
            condition["verificationStatus"] = {
                "coding": [{"system": VERIFICATION, "code": verification}]
            }
    if ctx.encounter:
        condition["encounter"] = {"reference": ctx.encounter}
    onset = ctx.date(dg1, 5)
    if onset:
        condition["onsetDateTime"] = onset
    recorded = ctx.date(dg1, 19)
    if recorded:
        condition["recordedDate"] = recorded
    notes = ctx.notes(dg1)
    if notes:
        condition["note"] = notes
    return ctx.add(condition, identifier=identifier, upsert=True)
