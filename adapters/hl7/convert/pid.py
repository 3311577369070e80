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
    extensions = [
        e
        for e in (
            _us_core_category(pid, 10, RACE, RACE_OMB),
            _us_core_category(pid, 22, ETHNICITY, ETHNICITY_OMB),
        )
        if e
    ]
    if extensions:
        patient["extension"] = extensions
    return patient


#: US Core race and ethnicity extensions (PID-10, PID-22; IG "PID[Patient]" maps them there):
#: OMB categories as ``ombCategory``, finer CDC race and ethnicity codes as ``detailed``,
#: the text always (required by the extension).
RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
CDC_RACE_ETHNICITY = "urn:oid:2.16.840.1.113883.6.238"
RACE_OMB = frozenset({"1002-5", "2028-9", "2054-5", "2076-8", "2106-3"})
ETHNICITY_OMB = frozenset({"2135-2", "2186-5"})
#: Table 0189 (v2.3-2.4 ethnic group) letters for the OMB ethnicity categories.
ETHNICITY_LETTERS = {"H": "2135-2", "N": "2186-5"}
_CDC_NAMES = frozenset({"CDCREC", "HL70005", "HL70189", "2.16.840.1.113883.6.238", ""})


def _us_core_category(
    pid: Segment, number: int, url: str, omb: frozenset[str]
) -> dict[str, Any] | None:
    parts: list[dict[str, Any]] = []
    texts: list[str] = []
    for rep in range(len(pid.repetitions(number))):
        code, text, system = (pid.get(number, c, repetition=rep) for c in (1, 2, 3))
        code = ETHNICITY_LETTERS.get(code, code) if url == ETHNICITY else code
        if text or code:
            texts.append(text or code)
        if not code or system.upper() not in _CDC_NAMES or not code[:4].isdigit():
            continue  # a local code: its text is kept, no coding invented
        coding = {"system": CDC_RACE_ETHNICITY, "code": code}
        if text:
            coding["display"] = text
        parts.append({"url": "ombCategory" if code in omb else "detailed", "valueCoding": coding})
    if not texts:
        return None
    return {"url": url, "extension": [*parts, {"url": "text", "valueString": ", ".join(texts)}]}


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
