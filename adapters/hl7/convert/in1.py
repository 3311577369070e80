"""IN1 (+ its IN2) -> Coverage with the payor Organization (IG "IN1[Coverage]",
"IN2[Coverage]").

The insured (subscriber) is the patient when IN1-17 is "self", else a RelatedPerson from
IN1-16 (name), IN1-17 (relationship), IN1-18 (birth date), IN1-19 (address), with IN2-1
(insured's employee id), IN2-2 (insured's SSN) and IN2-63/64 (phones) from the IN2 that
follows the IN1. IN2-6 (Medicare) and IN2-8 (Medicaid) numbers become Coverage identifiers;
IN2-72 (patient's relationship to the insured) is the relationship when IN1-17 is empty.
"""

from __future__ import annotations

from typing import Any

from fhirhub.adapters.hl7.convert.context import Conversion
from fhirhub.adapters.hl7.convert.datatypes import codeable, identifiers, telecoms
from fhirhub.adapters.hl7.convert.gt1 import SELF, related_person, ssn_identifier
from fhirhub.adapters.hl7.convert.participants import organization
from fhirhub.adapters.hl7.parsing import Message, Segment


def insurances(message: Message) -> list[tuple[Segment, Segment | None]]:
    """Each IN1 with the IN2 of its insurance group (IN1 [IN2] [IN3...] [ROL...]), in order."""
    out: list[tuple[Segment, Segment | None]] = []
    open_group = False
    for segment in message.segments:
        if segment.name == "IN1":
            out.append((segment, None))
            open_group = True
        elif segment.name == "IN2" and open_group and out[-1][1] is None:
            out[-1] = (out[-1][0], segment)
        elif segment.name not in ("IN2", "IN3", "ROL"):
            open_group = False
    return out


def convert_in1(
    ctx: Conversion, in1: Segment, index: int, in2: Segment | None = None
) -> str | None:
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
    start, end = ctx.date(in1, 12), ctx.date(in1, 13)
    if start or end:
        coverage["period"] = {k: v for k, v in (("start", start), ("end", end)) if v}
    relationship = codeable(in1, 17, table="0063")
    if relationship is None and in2 is not None:
        relationship = codeable(in2, 72, table="0063")
    if relationship:
        coverage["relationship"] = relationship
    subscriber = _subscriber(ctx, in1, in2, index)
    if subscriber is not None:
        coverage["subscriber"] = subscriber
    if in2 is not None:
        coverage["identifier"] += [
            {"system": system, "value": in2.get(number)}
            for number, system in (
                (6, "urn:fhirhub:hl7v2:medicare-hic"),
                (8, "urn:fhirhub:hl7v2:medicaid-case"),
            )
            if in2.get(number)
        ]
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


def _subscriber(
    ctx: Conversion, in1: Segment, in2: Segment | None, index: int
) -> dict[str, Any] | None:
    """The insured: the patient ("self"), else a RelatedPerson from IN1-16..19 and IN2."""
    if ctx.patient is None:
        return None
    code = (in1.get(17) or (in2.get(72) if in2 is not None else "")).upper()
    if code in SELF:
        return {"reference": ctx.patient}
    extra: list[dict[str, Any]] = []
    telecom: list[dict[str, Any]] = []
    if in2 is not None:
        extra = identifiers(in2, 1)
        for identifier in extra:
            identifier.setdefault("system", ctx.sender_system)
        if in2.get(2):
            extra.append(ssn_identifier(in2.get(2)))
        telecom = telecoms(in2, 63, "home") + telecoms(in2, 64, "work")
    key = {"system": f"urn:fhirhub:hl7v2:insured:{ctx.patient_key}", "value": str(index)}
    person = related_person(
        ctx,
        in1,
        key=key,
        name=16,
        relationship=17,
        address=19,
        birth=18,
        extra_ids=extra,
        extra_telecom=telecom,
    )
    return ctx.ref(person)
