"""``demographic`` -> Patient; ``provider`` -> Practitioner and PractitionerRole."""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from fhirhub.adapters.oscar import codes
from fhirhub.adapters.oscar.dates import MappingError, birth_date, fhir_date, fhir_datetime
from fhirhub.adapters.oscar.mapping.context import MappingContext
from fhirhub.adapters.oscar.mapping.values import text
from fhirhub.adapters.oscar.model import Demographic, Provider

ROSTER_EXTENSION = "https://fhirhub.dev/fhir/StructureDefinition/oscar-roster-status"
PATIENT_STATUS_EXTENSION = "https://fhirhub.dev/fhir/StructureDefinition/oscar-patient-status"
#: demographicExt keys with a standard FHIR place.
_EXT_CELL = ("demo_cell", "cell")
_EXT_WORK_PHONE_EXT = "wPhoneExt"


def patient(
    record: Demographic, ctx: MappingContext, known_providers: Container[str] | None
) -> dict[str, Any]:
    """Patient (R4 §8.1). Never invents: a partial birth date stays partial, an unknown sex
    stays absent, an impossible birth date is a :class:`MappingError`."""
    zone = ctx.zone
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": ctx.patient_id(record.demographic_no),
        "meta": ctx.meta(),
        "identifier": [
            {
                "use": "usual",
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                    ]
                },
                **ctx.identifier("demographic", record.demographic_no),
            }
        ],
    }
    hin = text(record.hin)
    if hin:
        ident: dict[str, Any] = {
            "use": "official",
            "type": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "JHN"}
                ]
            },
            "system": codes.health_number_system(record.hc_type, ctx.source_uri),
            "value": hin.replace(" ", ""),
        }
        renew = fhir_date(record.hc_renew_date, zone, field="hc_renew_date")
        if renew:
            ident["period"] = {"end": renew}
        resource["identifier"].append(ident)
    chart = text(record.chart_no)
    if chart:
        resource["identifier"].append({"use": "secondary", **ctx.identifier("chart-no", chart)})

    status = (text(record.patient_status) or "").upper()
    if status:
        resource["active"] = status in codes.ACTIVE_PATIENT_STATUSES
    family, given = text(record.last_name), text(record.first_name)
    name: dict[str, Any] = {"use": "official"}
    if family:
        name["family"] = family
    givens = [g for g in (given, text(record.middleNames)) if g]
    if givens:
        name["given"] = givens
    if text(record.title):
        name["prefix"] = [text(record.title)]
    names = [name] if len(name) > 1 else []
    if text(record.alias):
        names.append({"use": "nickname", "text": text(record.alias)})
    if not names:
        raise MappingError(f"demographic {record.demographic_no} has no name")
    resource["name"] = names

    telecom: list[dict[str, Any]] = []
    for value, use in ((record.phone, "home"), (record.phone2, "work")):
        if text(value):
            telecom.append({"system": "phone", "value": text(value), "use": use})
    cell = next((record.ext[k] for k in _EXT_CELL if text(record.ext.get(k))), None)
    if cell:
        telecom.append({"system": "phone", "value": text(cell), "use": "mobile"})
    if text(record.email):
        telecom.append({"system": "email", "value": text(record.email)})
    if telecom:
        resource["telecom"] = telecom

    gender = codes.GENDER.get((text(record.sex) or "").upper())
    if gender:
        resource["gender"] = gender
    born = birth_date(record.year_of_birth, record.month_of_birth, record.date_of_birth)
    if born:
        resource["birthDate"] = born
    if status == codes.DECEASED_PATIENT_STATUS:
        died = fhir_date(record.patient_status_date, zone, field="patient_status_date")
        if died:
            resource["deceasedDateTime"] = died
        else:
            resource["deceasedBoolean"] = True

    address = {
        key: value
        for key, value in (
            ("line", [text(record.address)] if text(record.address) else None),
            ("city", text(record.city)),
            ("state", text(record.province)),
            ("postalCode", text(record.postal)),
        )
        if value
    }
    if address:
        resource["address"] = [{"use": "home", **address, "country": "CA"}]
    language = text(record.spoken_lang) or text(record.official_lang)
    if language:
        resource["communication"] = [{"language": {"text": language}, "preferred": True}]
    gp = ctx.practitioner_ref(record.provider_no, known_providers)
    if gp:
        resource["generalPractitioner"] = [gp]

    extensions: list[dict[str, Any]] = []
    if status:
        extensions.append(
            {
                "url": PATIENT_STATUS_EXTENSION,
                "valueCoding": {
                    "system": ctx.system("patient-status"),
                    "code": status,
                    **(
                        {"display": codes.PATIENT_STATUS_DISPLAY[status]}
                        if status in codes.PATIENT_STATUS_DISPLAY
                        else {}
                    ),
                },
            }
        )
    roster = (text(record.roster_status) or "").upper()
    if roster:
        extensions.append(
            {
                "url": ROSTER_EXTENSION,
                "valueCoding": {
                    "system": ctx.system("roster-status"),
                    "code": roster,
                    **(
                        {"display": codes.ROSTER_STATUS_DISPLAY[roster]}
                        if roster in codes.ROSTER_STATUS_DISPLAY
                        else {}
                    ),
                },
            }
        )
    if extensions:
        resource["extension"] = extensions
    joined = fhir_datetime(record.date_joined, zone, field="date_joined")
    if joined:
        resource.setdefault("identifier", [])[0]["period"] = {"start": joined[:10]}
    return resource


def practitioner(record: Provider, ctx: MappingContext) -> list[dict[str, Any]]:
    """Practitioner (R4 §8.4) with its OSCAR, billing and college numbers, and a
    PractitionerRole (R4 §8.5) carrying the specialty."""
    number = str(record.provider_no).strip()
    if not number:
        raise MappingError("provider without provider_no")
    identifiers = [ctx.identifier("provider", number)]
    if text(record.billing_no):
        identifiers.append(ctx.identifier("billing-no", text(record.billing_no) or ""))
    if text(record.ohip_no):
        identifiers.append(
            {
                "system": "https://fhir.infoway-inforoute.ca/NamingSystem/ca-on-provider-billing-number",
                "value": text(record.ohip_no),
            }
        )
    licence = text(record.practitionerNo)
    if licence:
        kind = (text(record.practitionerNoType) or "").upper()
        identifiers.append(
            {
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MD"}
                    ],
                    "text": kind or "licence",
                },
                "system": codes.LICENCE_SYSTEMS.get(
                    kind, ctx.system(f"licence/{kind or 'unknown'}")
                ),
                "value": licence,
            }
        )
    resource: dict[str, Any] = {
        "resourceType": "Practitioner",
        "id": ctx.practitioner_id(number),
        "meta": ctx.meta(),
        "identifier": identifiers,
        "active": (text(record.status) or "1") == "1",
    }
    name: dict[str, Any] = {}
    if text(record.last_name):
        name["family"] = text(record.last_name)
    if text(record.first_name):
        name["given"] = [text(record.first_name)]
    if text(record.title):
        name["prefix"] = [text(record.title)]
    if name:
        resource["name"] = [name]
    telecom = [
        {"system": system, "value": text(value), "use": use}
        for system, value, use in (
            ("phone", record.work_phone, "work"),
            ("phone", record.phone, "home"),
            ("email", record.email, "work"),
        )
        if text(value)
    ]
    if telecom:
        resource["telecom"] = telecom
    gender = codes.GENDER.get((text(record.sex) or "").upper())
    if gender:
        resource["gender"] = gender
    born = fhir_date(record.dob, ctx.zone, field="dob")
    if born:
        resource["birthDate"] = born
    role: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": ctx.resource_id("prr", number),
        "meta": ctx.meta(),
        "active": resource["active"],
        "practitioner": {"reference": f"Practitioner/{resource['id']}"},
    }
    kind = (text(record.provider_type) or "").lower()
    if kind:
        coding = (
            [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/practitioner-role",
                    "code": codes.PRACTITIONER_ROLE[kind],
                }
            ]
            if kind in codes.PRACTITIONER_ROLE
            else []
        )
        role["code"] = [{"coding": coding, "text": kind}] if coding else [{"text": kind}]
    if text(record.specialty):
        role["specialty"] = [{"text": text(record.specialty)}]
    return [resource, role]
