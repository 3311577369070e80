"""PR1 -> Procedure (IG "PR1[Procedure]"): code PR1-3, performed PR1-5, surgeon PR1-11."""

from __future__ import annotations

from typing import Any

from fhirhub.adapters.hl7.convert.context import Conversion
from fhirhub.adapters.hl7.convert.datatypes import codeable
from fhirhub.adapters.hl7.convert.participants import practitioner
from fhirhub.adapters.hl7.parsing import Segment


def convert_pr1(ctx: Conversion, pr1: Segment, index: int) -> str | None:
    code = codeable(pr1, 3)
    if code is None and pr1.get(4):
        code = {"text": pr1.get(4)}
    if code is None or ctx.patient is None:
        return None
    value = pr1.get(19) or f"{pr1.get(3, 1) or pr1.get(4)}-{pr1.get(5)}"
    identifier = {"system": f"urn:fhirhub:hl7v2:procedure:{ctx.patient_key}", "value": value}
    procedure: dict[str, Any] = {
        "resourceType": "Procedure",
        "identifier": [identifier],
        "status": "completed",
        "subject": {"reference": ctx.patient},
        "code": code,
    }
    if ctx.encounter:
        procedure["encounter"] = {"reference": ctx.encounter}
    performed = ctx.date(pr1, 5)
    if performed:
        procedure["performedDateTime"] = performed
    performers = [
        p for p in (practitioner(ctx, pr1, 8), practitioner(ctx, pr1, 11)) if p and "reference" in p
    ]
    if performers:
        procedure["performer"] = [{"actor": p} for p in performers]
    notes = ctx.notes(pr1)
    if notes:
        procedure["note"] = notes
    return ctx.add(procedure, identifier=identifier, upsert=True)
