"""What the record says about one patient, gathered once per question (as the caller) for the
guardrails: active medications, conditions, quoted values and whether a verified weight
exists."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fhirhub.sdk import Access, FhirError, Hub, acting_as, search

from .render import concept_text, medication_name
from .vocabulary import BODY_WEIGHT


@dataclass
class RecordFacts:
    active_medications: list[str] = field(default_factory=list)
    all_medications: list[str] = field(default_factory=list)
    active_conditions: list[str] = field(default_factory=list)
    #: LOINC code -> every numeric value recorded (components included).
    values: dict[str, list[float]] = field(default_factory=dict)
    verified_weight: bool = False


def _search(hub: Hub, kind: str, params: dict[str, str]) -> list[dict[str, Any]]:
    try:
        return search(hub, kind, params)
    except FhirError:
        return []  # a type the caller may not read contributes nothing


def gather(hub: Hub, access: Access, patient: str, *, weight_days: int = 30) -> RecordFacts:
    facts = RecordFacts()
    ref = f"Patient/{patient}"
    with acting_as(access):
        for kind in ("MedicationRequest", "MedicationStatement"):
            for resource in _search(hub, kind, {"patient": ref, "_count": "500"}):
                name = medication_name(resource).lower()
                facts.all_medications.append(name)
                if resource.get("status") == "active":
                    facts.active_medications.append(name)
        for resource in _search(hub, "Condition", {"patient": ref, "_count": "500"}):
            status = concept_text(resource.get("clinicalStatus")).lower()
            if status in ("active", "recurrence", "relapse"):
                facts.active_conditions.append(concept_text(resource.get("code")).lower())
        observations = _search(hub, "Observation", {"patient": ref, "_count": "1000"})
    cutoff = (datetime.now(UTC) - timedelta(days=weight_days)).isoformat()
    for obs in observations:
        for part in [obs, *(obs.get("component") or [])]:
            quantity = part.get("valueQuantity") or {}
            if quantity.get("value") is None:
                continue
            for coding in (part.get("code") or {}).get("coding") or []:
                if coding.get("code"):
                    facts.values.setdefault(str(coding["code"]), []).append(
                        float(quantity["value"])
                    )
        codes = {c.get("code") for c in (obs.get("code") or {}).get("coding") or []}
        when = str(obs.get("effectiveDateTime") or obs.get("issued") or "")
        if (
            BODY_WEIGHT in codes
            and obs.get("status") in ("final", "amended", "corrected")
            and when >= cutoff[: len(when)]
        ):
            facts.verified_weight = True
    return facts
