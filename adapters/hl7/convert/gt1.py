"""GT1 (guarantor) -> who pays: the payor of a self-pay Coverage (IG "GT1[Coverage]",
"GT1[RelatedPerson]", "GT1[Organization]").

The guarantor is the patient when GT1-11 says "self" (table 0063 ``SEL``), an Organization
when GT1-21 names one (an employer or agency guaranteeing the account), otherwise a
RelatedPerson built from GT1-3 (name), GT1-5 (address), GT1-6/7 (phones), GT1-8 (birth date),
GT1-9 (sex), GT1-11 (relationship) and GT1-2/GT1-12 (guarantor number, SSN). Each becomes
``Coverage.payor`` of a Coverage of type ``pay`` (CodeSystem coverage-selfpay): the patient's
care is paid by the guarantor rather than by an insurer (IN1 gives those).
"""

from __future__ import annotations

from typing import Any

from fhirhub.adapters.hl7.convert.context import Conversion
from fhirhub.adapters.hl7.convert.datatypes import (
    addresses,
    codeable,
    human_names,
    identifiers,
    telecoms,
)
from fhirhub.adapters.hl7.convert.participants import organization_xon
from fhirhub.adapters.hl7.convert.tables import GENDER
from fhirhub.adapters.hl7.parsing import Segment

#: Table 0063 (relationship) codes meaning "the patient themself".
SELF = frozenset({"SEL", "SELF"})
SELF_PAY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/coverage-selfpay",
            "code": "pay",
            "display": "PAY",
        }
    ]
}
SSN_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}]}


def ssn_identifier(value: str) -> dict[str, Any]:
    return {"system": "http://hl7.org/fhir/sid/us-ssn", "value": value, "type": SSN_TYPE}


def related_person(
    ctx: Conversion,
    segment: Segment,
    *,
    key: dict[str, Any],
    name: int,
    relationship: int,
    address: int | None = None,
    birth: int | None = None,
    sex: int | None = None,
    phones: tuple[int | None, int | None] = (None, None),
    extra_ids: list[dict[str, Any]] | None = None,
    extra_telecom: list[dict[str, Any]] | None = None,
) -> str | None:
    """A RelatedPerson of the patient from the given fields of ``segment`` (GT1, IN1) and the
    identifiers and telecoms of a companion segment (IN2), kept under the identifier ``key``;
    None without a name."""
    names = human_names(segment, name)
    if not names or ctx.patient is None:
        return None
    person: dict[str, Any] = {
        "resourceType": "RelatedPerson",
        "identifier": [key, *(extra_ids or [])],
        "patient": {"reference": ctx.patient},
        "name": names,
    }
    kind = codeable(segment, relationship, table="0063")
    if kind:
        person["relationship"] = [kind]
    if address is not None and addresses(segment, address):
        person["address"] = addresses(segment, address)
    home, work = phones
    telecom = (telecoms(segment, home, "home") if home else []) + (
        telecoms(segment, work, "work") if work else []
    )
    telecom += extra_telecom or []
    if telecom:
        person["telecom"] = telecom
    born = ctx.date(segment, birth, precision="date") if birth is not None else None
    if born:
        person["birthDate"] = born
    gender = GENDER.get(segment.get(sex).upper()) if sex is not None else None
    if gender:
        person["gender"] = gender
    return ctx.add(person, identifier=key, upsert=ctx.owns_patient)


def convert_gt1(ctx: Conversion, gt1: Segment, index: int) -> str | None:
    """The self-pay Coverage whose payor is this guarantor; None when GT1 names nobody."""
    if ctx.patient is None:
        return None
    payor: dict[str, Any] | None
    if gt1.get(11).upper() in SELF:
        payor = {"reference": ctx.patient}
    elif gt1.get(21):
        payor = organization_xon(ctx, gt1, 21)
    else:
        numbers = identifiers(gt1, 2)
        for number in numbers:
            number.setdefault("system", ctx.sender_system)
        if gt1.get(12):
            numbers.append(ssn_identifier(gt1.get(12)))
        key = {"system": f"urn:fhirhub:hl7v2:gt1:{ctx.patient_key}", "value": str(index)}
        person = related_person(
            ctx,
            gt1,
            key=key,
            name=3,
            relationship=11,
            address=5,
            birth=8,
            sex=9,
            phones=(6, 7),
            extra_ids=numbers,
        )
        payor = ctx.ref(person)
    if payor is None:
        return None
    identifier = {"system": f"urn:fhirhub:hl7v2:guarantor:{ctx.patient_key}", "value": str(index)}
    coverage: dict[str, Any] = {
        "resourceType": "Coverage",
        "identifier": [identifier],
        "status": "active",
        "type": SELF_PAY,
        "beneficiary": {"reference": ctx.patient},
        "payor": [payor],
    }
    start, end = ctx.date(gt1, 13), ctx.date(gt1, 14)
    if start or end:
        coverage["period"] = {k: v for k, v in (("start", start), ("end", end)) if v}
    return ctx.add(coverage, identifier=identifier, upsert=True)
