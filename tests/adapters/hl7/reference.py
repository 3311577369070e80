"""Fact-level comparison with the reference converter's output (../shared/data/hl7v2/expected).

A "fact" is one value a clinician would check: a patient identifier value, a family name, the
birth date, gender, an address city/postal code, the encounter class and start date, an
observation code, numeric value or unit, an order code, an appointment start or status.
Ids and formatting are ignored; dates compare on the calendar day.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any


def _codes(concept: Any) -> set[str]:
    if not isinstance(concept, dict):
        return set()
    return {c.get("code") for c in concept.get("coding", []) if c.get("code")}


def _main_patient(bundle: dict[str, Any]) -> dict[str, Any] | None:
    """The message's patient: the Patient other resources reference most.

    The reference converter also writes guarantors (GT1) and insured persons (IN1/IN2) as
    Patient resources; their facts are not the patient's and are not compared.
    """
    patients = {}
    for entry in bundle.get("entry", []):
        resource = entry.get("resource", {})
        if resource.get("resourceType") == "Patient":
            for key in (entry.get("fullUrl"), f"Patient/{resource.get('id')}"):
                if key:
                    patients[key] = resource
    if not patients:
        return None
    counts = {id(p): 0 for p in patients.values()}
    text = json.dumps(
        [
            e.get("resource")
            for e in bundle.get("entry", [])
            if e.get("resource", {}).get("resourceType") != "Patient"
        ]
    )
    for key, resource in patients.items():
        counts[id(resource)] += text.count(f'"{key}"')
    first = next(iter(patients.values()))
    return max(patients.values(), key=lambda p: (counts[id(p)], p is first))


def facts(bundle: dict[str, Any]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    patient = _main_patient(bundle)
    for entry in bundle.get("entry", []):
        r = entry.get("resource", {})
        kind = r.get("resourceType")
        if kind == "Patient" and r is not patient:
            continue
        for fact in _facts(kind, r):
            out.add((kind, fact))
    return out


def _facts(kind: str, r: dict[str, Any]) -> Iterator[str]:
    if kind == "Patient":
        for i in r.get("identifier", []):
            if i.get("value", "").strip():
                yield f"identifier={i['value']}"
        for n in r.get("name", []):
            if n.get("family"):
                yield f"family={n['family'].upper()}"
        if r.get("birthDate"):
            yield f"birthDate={r['birthDate'][:10]}"
        if r.get("gender"):
            yield f"gender={r['gender']}"
        for a in r.get("address", []):
            if a.get("city"):
                yield f"city={a['city'].strip().upper()}"
            if a.get("postalCode"):
                yield f"postalCode={a['postalCode']}"
    elif kind == "Encounter":
        if isinstance(r.get("class"), dict) and r["class"].get("code"):
            yield f"class={r['class']['code']}"
        start = (r.get("period") or {}).get("start")
        if start:
            yield f"start={start[:10]}"
    elif kind == "Observation":
        for code in _codes(r.get("code")):
            yield f"code={code}"
        quantity = r.get("valueQuantity") or {}
        if "value" in quantity:
            yield f"value={float(quantity['value'])}"
        if quantity.get("unit"):
            yield f"unit={quantity['unit']}"
    elif kind == "ServiceRequest":
        for code in _codes(r.get("code")):
            yield f"code={code}"
    elif kind == "Appointment":
        if r.get("start"):
            yield f"start={r['start'][:10]}"
        if r.get("status"):
            yield f"status={r['status']}"
    elif kind == "Immunization":
        for code in _codes(r.get("vaccineCode")):
            yield f"vaccine={code}"
    elif kind == "MedicationRequest":
        for code in _codes(r.get("medicationCodeableConcept")):
            yield f"medication={code}"
