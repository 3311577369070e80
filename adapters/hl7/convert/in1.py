"""IN1 -> Coverage with the payor Organization (IG "IN1[Coverage]")."""

from __future__ import annotations

from typing import Any

from fhirhub.adapters.hl7.convert.context import Conversion
from fhirhub.adapters.hl7.convert.datatypes import codeable, dtm
from fhirhub.adapters.hl7.convert.participants import organization
from fhirhub.adapters.hl7.parsing import Segment


def convert_in1(ctx: Conversion, in1: Segment, index: int) -> str | None:
    if ctx.patient is None:
        return None
    plan = in1.get(2, 1) or in1.get(2, 2)
    company = in1.get(4) or in1.get(3)
    payor = organization(ctx, company, in1.get(3, 1)) if (company or in1.get(3, 1)) else None
    if payor is None:
        return None
    member = in1.get(36) or in1.get(49, 1)
    value = f"{in1.get(3, 1) or company}|{member or plan or index}"
    identifier = {"system": f"urn:fhirhub:hl7v2:coverage:{ctx.patient_key}", "value": value}
    coverage: dict[str, Any] = {
        "resourceType": "Coverage",
        "identifier": [identifier],
        "status": "active",
        "beneficiary": {"reference": ctx.patient},
        "payor": [payor],
        "order": int(in1.get(1)) if in1.get(1).isdigit() and int(in1.get(1)) > 0 else index,
    }
    if member:
        coverage["subscriberId"] = member
    kind = codeable(in1, 15)
    if kind:
        coverage["type"] = kind
    start, end = dtm(in1.get(12)), dtm(in1.get(13))
    if start or end:
        coverage["period"] = {k: v for k, v in (("start", start), ("end", end)) if v}
    relationship = codeable(in1, 17, table="0063")
    if relationship:
        coverage["relationship"] = relationship
    if plan:
        coverage["class"] = [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/coverage-class",
                            "code": "plan",
                        }
                    ]
                },
                "value": plan,
                "name": in1.get(2, 2) or None,
            }
        ]
        if coverage["class"][0]["name"] is None:
            del coverage["class"][0]["name"]
    return ctx.add(coverage, identifier=identifier, upsert=True)
