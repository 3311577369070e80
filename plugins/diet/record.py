"""What the patient's record says that a diet needs, read with the caller's access.

Every read goes through the SDK as the current caller, so a caller who may not see the patient
gets 404 (another tenant's patient reads exactly like a missing one) and a patient-context
caller sees only its own record.

* age and sex: ``Patient.birthDate`` and ``Patient.gender``;
* weight and height: the latest final/amended/corrected Observation with LOINC 29463-7 (body
  weight) and 8302-2 (body height), converted to kg and cm from their UCUM units;
* allergies and intolerances: active, not refuted AllergyIntolerance records mapped to food tags
  by ``data/allergens.json``;
* profiles: active Conditions mapped by ``data/conditions.json`` (used when a request names
  no profile).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

from fhirhub.sdk import Hub, read, search

from .request import HEIGHT_UNITS, WEIGHT_UNITS

DATA = Path(__file__).resolve().parent / "data"
LOINC = "http://loinc.org"
BODY_WEIGHT = "29463-7"
BODY_HEIGHT = "8302-2"
USABLE_STATUS = ("final", "amended", "corrected")
INACTIVE = ("inactive", "resolved", "remission")
NOT_TRUE = ("refuted", "entered-in-error")


@dataclass
class PatientFacts:
    patient_id: str
    age: float | None = None
    sex: str | None = None
    weight_kg: float | None = None
    height_cm: float | None = None
    #: (fact, where it came from), e.g. ("weight", "Observation/12 (2024-05-02)").
    sources: list[tuple[str, str]] = field(default_factory=list)
    #: (tag to exclude, the allergy that asks for it).
    allergy_tags: list[tuple[str, str]] = field(default_factory=list)
    #: (profile, the condition that suggests it).
    condition_profiles: list[tuple[str, str]] = field(default_factory=list)


@cache
def _allergen_map() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads((DATA / "allergens.json").read_text(encoding="utf-8"))
    return spec


@cache
def _condition_map() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads((DATA / "conditions.json").read_text(encoding="utf-8"))
    return spec


def read_patient(hub: Hub, patient_id: str, today: date | None = None) -> PatientFacts:
    patient = read(hub, "Patient", patient_id)  # 404 unless the caller may see it
    facts = PatientFacts(patient_id)
    birth = patient.get("birthDate")
    if isinstance(birth, str) and re.match(r"^\d{4}-\d{2}-\d{2}$", birth):
        facts.age = float(_age(date.fromisoformat(birth), today or date.today()))
        facts.sources.append(("age", f"Patient/{patient_id}.birthDate {birth}"))
    if patient.get("gender"):
        facts.sex = str(patient["gender"])
        facts.sources.append(("sex", f"Patient/{patient_id}.gender"))
    reference = f"Patient/{patient_id}"
    for code, units, attribute in (
        (BODY_WEIGHT, WEIGHT_UNITS, "weight_kg"),
        (BODY_HEIGHT, HEIGHT_UNITS, "height_cm"),
    ):
        found = _latest_quantity(hub, reference, code, units)
        if found is not None:
            value, where = found
            setattr(facts, attribute, value)
            facts.sources.append((attribute.split("_")[0], where))
    facts.allergy_tags = allergy_tags(
        search(hub, "AllergyIntolerance", [("patient", reference), ("_count", "200")])
    )
    facts.condition_profiles = condition_profiles(
        search(hub, "Condition", [("patient", reference), ("_count", "200")])
    )
    return facts


def _age(birth: date, today: date) -> int:
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def _latest_quantity(
    hub: Hub, patient: str, code: str, units: dict[str, float]
) -> tuple[float, str] | None:
    observations = search(
        hub, "Observation", [("patient", patient), ("code", f"{LOINC}|{code}"), ("_count", "200")]
    )
    best: tuple[str, float, str] | None = None
    for observation in observations:
        if observation.get("status") not in USABLE_STATUS:
            continue
        quantity = observation.get("valueQuantity") or {}
        unit = quantity.get("code") or quantity.get("unit")
        if unit not in units or not isinstance(quantity.get("value"), int | float):
            continue
        when = str(observation.get("effectiveDateTime") or observation.get("issued") or "")
        value = float(quantity["value"]) * units[unit]
        if best is None or when > best[0]:
            best = (when, value, f"Observation/{observation.get('id')} ({when[:10]})")
    return None if best is None else (best[1], best[2])


def _codings(concept: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list((concept or {}).get("coding") or [])


def _texts(concept: dict[str, Any] | None) -> list[str]:
    texts = [str((concept or {}).get("text") or "")]
    texts += [str(c.get("display") or "") for c in _codings(concept)]
    return [t for t in texts if t]


def _status(resource: dict[str, Any], element: str) -> str:
    codes = [c.get("code") for c in _codings(resource.get(element))]
    return str(codes[0]) if codes else ""


def allergy_tags(allergies: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(tag, allergy description) for every active, not refuted allergy or intolerance."""
    spec = _allergen_map()
    ignore = re.compile(spec["ignore_text"], re.IGNORECASE)
    found: list[tuple[str, str]] = []
    for allergy in allergies:
        if _status(allergy, "clinicalStatus") in INACTIVE:
            continue
        if _status(allergy, "verificationStatus") in NOT_TRUE:
            continue
        code = allergy.get("code")
        label = (_texts(code) or ["an allergy"])[0]
        tags: list[str] = []
        for coding in _codings(code):
            tags += spec["codes"].get(f"{coding.get('system')}|{coding.get('code')}", [])
        if not tags:
            for text in _texts(code):
                if ignore.search(text):
                    continue
                for rule in spec["text"]:
                    if re.search(rule["pattern"], text, re.IGNORECASE):
                        tags += rule["tags"]
        found += [(tag, label) for tag in dict.fromkeys(tags)]
    return found


def condition_profiles(conditions: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(profile, condition description) for every active condition the mapping knows."""
    spec = _condition_map()
    found: dict[str, str] = {}
    for condition in conditions:
        if _status(condition, "clinicalStatus") in INACTIVE:
            continue
        if _status(condition, "verificationStatus") in NOT_TRUE:
            continue
        code = condition.get("code")
        label = (_texts(code) or ["a condition"])[0]
        profile = None
        for coding in _codings(code):
            profile = profile or spec["codes"].get(f"{coding.get('system')}|{coding.get('code')}")
        if profile is None:
            for text in _texts(code):
                for rule in spec["text"]:
                    if profile is None and re.search(rule["pattern"], text, re.IGNORECASE):
                        profile = rule["profile"]
        if profile is not None and profile not in found:
            found[profile] = label
    return list(found.items())
