"""PID (+PD1) -> Patient (HL7 v2-to-FHIR IG, "PID[Patient]" segment map)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fhirhub.adapters.hl7.convert.context import Conversion, ConversionError
from fhirhub.adapters.hl7.convert.datatypes import (
    addresses,
    codeable,
    human_names,
    identifiers,
    telecoms,
)
from fhirhub.adapters.hl7.convert.participants import organization_xon, practitioner
from fhirhub.adapters.hl7.convert.tables import GENDER
from fhirhub.adapters.hl7.parsing import Segment


def patient_resource(ctx: Conversion, pid: Segment) -> dict[str, Any]:
    ids = identifiers(pid, 3) + identifiers(pid, 2) + identifiers(pid, 4)
    for identifier in ids:
        identifier.setdefault("system", ctx.sender_system)
    ssn = pid.get(19)
    if ssn:
        ids.append(
            {
                "system": "http://hl7.org/fhir/sid/us-ssn",
                "value": ssn,
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}
                    ]
                },
            }
        )
    licence = pid.get(20)
    if licence:
        ids.append(
            {
                "value": licence,
                "system": ctx.sender_system,
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "DL"}
                    ]
                },
            }
        )
    patient: dict[str, Any] = {"resourceType": "Patient"}
    if ids:
        patient["identifier"] = ids
    names = human_names(pid, 5) + [dict(n, use="nickname") for n in human_names(pid, 9)]
    if names:
        patient["name"] = names
    birth = ctx.date(pid, 7, precision="date")
    if birth:
        patient["birthDate"] = birth
    gender = GENDER.get(pid.get(8).upper())
    if gender:
        patient["gender"] = gender
    address = addresses(pid, 11)
    if address:
        patient["address"] = address
    telecom = telecoms(pid, 13, "home") + telecoms(pid, 14, "work")
    if telecom:
        patient["telecom"] = telecom
    marital = codeable(pid, 16, table="0002")
    if marital:
        patient["maritalStatus"] = marital
    language = codeable(pid, 15)
    if language:
        patient["communication"] = [{"language": language, "preferred": True}]
    deceased_at = ctx.date(pid, 29)
    if deceased_at:
        patient["deceasedDateTime"] = deceased_at
    elif pid.get(30) in ("Y", "N"):
        patient["deceasedBoolean"] = pid.get(30) == "Y"
    if pid.get(24) in ("Y", "N"):
        patient["multipleBirthBoolean"] = pid.get(24) == "Y"
        if pid.get(25).isdigit() and pid.get(24) == "Y":
            patient["multipleBirthInteger"] = int(pid.get(25))
            del patient["multipleBirthBoolean"]
    return patient


def convert_patient(ctx: Conversion, pid: Segment | None) -> str:
    """Add the Patient and return its reference; every message family needs one."""
    if pid is None:
        raise ConversionError(
            "The message has no PID segment (patient identification)", segment="PID", code="100"
        )
    patient = patient_resource(ctx, pid)
    if not patient.get("identifier"):
        raise ConversionError("PID-3 (patient identifier list) is empty", segment="PID", field=3)
    pd1 = ctx.message.first("PD1")
    if pd1 is not None:
        care = [r for r in (organization_xon(ctx, pd1, 3), practitioner(ctx, pd1, 4)) if r]
        care = [r for r in care if "reference" in r]
        if care:
            patient["generalPractitioner"] = care
    primary = patient["identifier"][0]
    match = {"system": primary["system"], "value": primary["value"]}
    ctx.patient_key = quote(f"{match['system']}|{match['value']}", safe="")
    ctx.patient = ctx.add(patient, identifier=match, upsert=ctx.owns_patient)
    return ctx.patient
