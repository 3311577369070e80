"""``allergies`` -> AllergyIntolerance; ``drugs`` -> MedicationRequest."""

from __future__ import annotations

from collections.abc import Container
from datetime import date
from typing import Any

from fhirhub.adapters.oscar import codes
from fhirhub.adapters.oscar.dates import MappingError, fhir_date, parse_date
from fhirhub.adapters.oscar.mapping.context import MappingContext
from fhirhub.adapters.oscar.mapping.values import fhir_decimal, flag, number, text
from fhirhub.adapters.oscar.model import Allergy, Drug


def _patient(ctx: MappingContext, demographic_no: int | None, what: str) -> dict[str, Any]:
    if not demographic_no:
        raise MappingError(f"{what} has no demographic_no")
    return ctx.patient_ref(demographic_no)


def allergy(
    record: Allergy, ctx: MappingContext, known_providers: Container[str] | None
) -> dict[str, Any]:
    """AllergyIntolerance (R4 §9.1). OSCAR "deletes" an allergy by archiving it: archived
    rows become ``verificationStatus = entered-in-error`` with no clinicalStatus (invariant
    ait-2 forbids one then), so the record stays visible as withdrawn, never removed. A
    record whose ``archived`` is unknown (None) gets neither status."""
    zone = ctx.zone
    description = text(record.DESCRIPTION)
    if not description:
        raise MappingError(f"allergy {record.allergyid} has no DESCRIPTION")
    resource: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "id": ctx.resource_id("al", record.allergyid),
        "meta": ctx.meta(),
        "identifier": [ctx.identifier("allergies", record.allergyid)],
        "patient": _patient(ctx, record.demographic_no, f"allergy {record.allergyid}"),
    }
    if record.archived is None:
        # The source does not say (OSCAR's SOAP AllergyTransfer has no archived flag): no
        # status rather than an invented "active" (both are optional; ait-1 needs neither).
        pass
    elif flag(record.archived):
        resource["verificationStatus"] = {
            "coding": [{"system": codes.ALLERGY_VERIFICATION, "code": "entered-in-error"}]
        }
    else:
        resource["clinicalStatus"] = {
            "coding": [{"system": codes.ALLERGY_CLINICAL, "code": "active"}]
        }
        resource["verificationStatus"] = {
            "coding": [{"system": codes.ALLERGY_VERIFICATION, "code": "confirmed"}]
        }
    try:
        typecode = int(record.TYPECODE) if record.TYPECODE not in (None, "") else 0
    except (TypeError, ValueError):
        raise MappingError(
            f"allergy {record.allergyid}: TYPECODE {record.TYPECODE!r} is not a number"
        ) from None
    category = codes.ALLERGY_CATEGORY.get(typecode)
    if category:
        resource["category"] = [category]
    coding = []
    if text(record.regional_identifier) and category == "medication":
        coding.append({"system": codes.DIN, "code": text(record.regional_identifier)})
    resource["code"] = {**({"coding": coding} if coding else {}), "text": description}
    severity = codes.ALLERGY_SEVERITY.get(text(record.severity_of_reaction) or "")
    if severity in ("severe",):
        resource["criticality"] = "high"
    onset = fhir_date(record.start_date, zone, field="start_date")
    if onset:
        resource["onsetDateTime"] = onset
    elif text(record.age_of_onset) and text(record.age_of_onset) != "0":
        age = number(record.age_of_onset)
        if age is not None:
            resource["onsetAge"] = {
                "value": fhir_decimal(age),
                "unit": "years",
                "system": codes.UCUM,
                "code": "a",
            }
    if text(record.life_stage) in codes.LIFE_STAGE:
        resource.setdefault("note", []).append(
            {"text": f"Life stage at onset: {codes.LIFE_STAGE[str(text(record.life_stage))]}"}
        )
    recorded = fhir_date(record.entry_date, zone, field="entry_date")
    if recorded:
        resource["recordedDate"] = recorded
    recorder = ctx.practitioner_ref(record.providerNo, known_providers)
    if recorder:
        resource["recorder"] = recorder
    reaction_text = text(record.reaction)
    onset_text = codes.ALLERGY_ONSET.get(text(record.onset_of_reaction) or "")
    if reaction_text or severity:
        reaction: dict[str, Any] = {"manifestation": [{"text": reaction_text or "reaction"}]}
        if reaction_text:
            reaction["description"] = reaction_text
        if severity:
            reaction["severity"] = severity
        if onset_text:
            reaction["note"] = [{"text": f"Onset of reaction: {onset_text}"}]
        resource["reaction"] = [reaction]
    return resource


def medication_request(
    record: Drug, ctx: MappingContext, known_providers: Container[str] | None, today: date
) -> dict[str, Any]:
    """MedicationRequest (R4 §12.13) from an OSCAR prescription row."""
    zone = ctx.zone
    names = [text(record.BN), text(record.GN), text(record.customName)]
    label = next((n for n in names if n), None)
    if not label:
        raise MappingError(f"drug {record.drugid} has no brand, generic or custom name")
    coding: list[dict[str, Any]] = []
    din = text(record.regional_identifier)
    if din:
        coding.append({"system": codes.DIN, "code": din, "display": text(record.BN) or label})
    atc = text(record.ATC)
    if atc:
        coding.append(
            {
                "system": codes.ATC,
                "code": atc,
                **({"display": text(record.GN)} if text(record.GN) else {}),
            }
        )
    medication: dict[str, Any] = {"text": label}
    if coding:
        medication["coding"] = coding
    rx_date = parse_date(record.rx_date, zone, field="rx_date")
    end = parse_date(record.end_date, zone, field="end_date")
    if rx_date and end and end < rx_date:
        raise MappingError(f"drug {record.drugid}: end_date {end} is before rx_date {rx_date}")
    if flag(record.archived):
        reason = (text(record.archived_reason) or "").replace(" ", "").lower()
        status = "entered-in-error" if reason in codes.ARCHIVED_IN_ERROR else "stopped"
    elif end and end < today:
        status = "completed"
    else:
        status = "active"
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": ctx.resource_id("rx", record.drugid),
        "meta": ctx.meta(),
        "identifier": [ctx.identifier("drugs", record.drugid)],
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": medication,
        "subject": _patient(ctx, record.demographic_no, f"drug {record.drugid}"),
    }
    if flag(record.past_med):
        resource["reportedBoolean"] = True
    if status == "stopped" and text(record.archived_reason):
        resource["statusReason"] = {"text": text(record.archived_reason)}
    if flag(record.long_term):
        resource["courseOfTherapyType"] = {
            "coding": [
                {
                    "system": codes.COURSE_OF_THERAPY,
                    "code": "continuous",
                    "display": "Continuous long term therapy",
                }
            ]
        }
    elif flag(record.short_term):
        resource["courseOfTherapyType"] = {
            "coding": [
                {
                    "system": codes.COURSE_OF_THERAPY,
                    "code": "acute",
                    "display": "Short course (acute) therapy",
                }
            ]
        }
    authored = fhir_date(record.written_date, zone, field="written_date") or (
        rx_date.isoformat() if rx_date else None
    )
    if authored:
        resource["authoredOn"] = authored
    requester = ctx.practitioner_ref(record.provider_no, known_providers)
    if requester:
        resource["requester"] = requester

    dosage: dict[str, Any] = {}
    instructions = " ".join(
        t for t in (text(record.special), text(record.special_instruction)) if t
    )
    if instructions:
        dosage["text"] = instructions
    if text(record.special_instruction):
        dosage["patientInstruction"] = text(record.special_instruction)
    freq = (text(record.freqcode) or "").upper().replace(" ", "")
    if freq in codes.FREQUENCIES:
        frequency, period, unit = codes.FREQUENCIES[freq]
        repeat: dict[str, Any] = {
            "frequency": frequency,
            "period": fhir_decimal(period),
            "periodUnit": unit,
        }
        if freq in codes.FREQUENCY_WHEN:
            repeat["when"] = [codes.FREQUENCY_WHEN[freq]]
        dosage["timing"] = {"repeat": repeat, "code": {"text": freq}}
    elif freq:
        dosage["timing"] = {"code": {"text": freq}}
    if flag(record.prn):
        dosage["asNeededBoolean"] = True
    route = (text(record.route) or "").upper()
    if route:
        dosage["route"] = (
            {
                "coding": [
                    {
                        "system": codes.SNOMED,
                        "code": codes.ROUTES[route][0],
                        "display": codes.ROUTES[route][1],
                    }
                ],
                "text": route,
            }
            if route in codes.ROUTES
            else {"text": route}
        )
    low, high = number(record.takemin), number(record.takemax)
    unit_name = text(record.unit)
    if low is not None and low > 0:

        def dose(value: Any) -> dict[str, Any]:
            return {"value": fhir_decimal(value), **({"unit": unit_name} if unit_name else {})}

        if high is not None and high > low:
            dosage["doseAndRate"] = [{"doseRange": {"low": dose(low), "high": dose(high)}}]
        else:
            dosage["doseAndRate"] = [{"doseQuantity": dose(low)}]
    if dosage:
        resource["dosageInstruction"] = [{"sequence": 1, **dosage}]

    dispense: dict[str, Any] = {}
    if rx_date or end:
        dispense["validityPeriod"] = {
            k: v.isoformat() for k, v in (("start", rx_date), ("end", end)) if v
        }
    repeats = number(record.repeat)
    if repeats is not None and repeats >= 0:
        dispense["numberOfRepeatsAllowed"] = int(repeats)
    quantity = number(record.quantity)
    if quantity is not None and quantity > 0:
        dispense["quantity"] = {
            "value": fhir_decimal(quantity),
            **({"unit": unit_name} if unit_name else {}),
        }
    duration = number(record.duration)
    unit_code = (text(record.durunit) or "").upper()
    if duration is not None and duration > 0 and unit_code in codes.DURATION_UNITS:
        code, label_unit = codes.DURATION_UNITS[unit_code]
        dispense["expectedSupplyDuration"] = {
            "value": fhir_decimal(duration),
            "unit": label_unit,
            "system": codes.UCUM,
            "code": code,
        }
    if dispense:
        resource["dispenseRequest"] = dispense
    if flag(record.nosubs):
        resource["substitution"] = {"allowedBoolean": False}
    return resource
