"""AL1 (and IAM) -> AllergyIntolerance (IG "AL1[AllergyIntolerance]")."""

from __future__ import annotations

from typing import Any

from fhirhub.adapters.hl7.convert.context import Conversion
from fhirhub.adapters.hl7.convert.datatypes import codeable
from fhirhub.adapters.hl7.convert.tables import ALLERGY_CATEGORY, ALLERGY_CRITICALITY
from fhirhub.adapters.hl7.parsing import Segment

CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"


def convert_al1(ctx: Conversion, al1: Segment, index: int) -> str | None:
    code = codeable(al1, 3)
    if code is None or ctx.patient is None:
        return None
    identifier = {
        "system": f"urn:fhirhub:hl7v2:allergy:{ctx.patient_key}",
        "value": al1.get(3, 1) or al1.get(3, 2),
    }
    allergy: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "identifier": [identifier],
        "patient": {"reference": ctx.patient},
        "code": code,
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
        "verificationStatus": {"coding": [{"system": VERIFICATION, "code": "confirmed"}]},
    }
    category = ALLERGY_CATEGORY.get(al1.get(2).upper())
    if category:
        allergy["category"] = [category]
    if al1.get(2).upper() in ("DA", "FA", "MA", "EA", "PA", "AA", "LA"):
        allergy["type"] = "allergy"
    criticality = ALLERGY_CRITICALITY.get(al1.get(4).upper())
    if criticality:
        allergy["criticality"] = criticality
    reactions = [al1.get(5, repetition=i) for i in range(len(al1.repetitions(5)))]
    reactions = [r for r in reactions if r]
    if reactions:
        allergy["reaction"] = [{"manifestation": [{"text": r} for r in reactions]}]
    onset = ctx.date(al1, 6)
    if onset:
        allergy["onsetDateTime"] = onset
    notes = ctx.notes(al1)
    if notes:
        allergy["note"] = notes
    return ctx.add(allergy, identifier=identifier, upsert=ctx.owns_patient)
