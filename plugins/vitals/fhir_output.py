"""Scores as FHIR: the score ``Observation`` and its ``RiskAssessment`` (docs/vitals.md).

Both carry an identifier (:data:`codes.SCORE_IDENTIFIER`) that is a digest of the method, the
patient, the SpO2 scale and the exact input versions: the writer creates them conditionally
on it, so the same inputs never make a second score, however often they are delivered or
replayed.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fhirhub.plugins.vitals import codes
from fhirhub.plugins.vitals.scores import Score

RISK_PROBABILITY = "http://terminology.hl7.org/CodeSystem/risk-probability"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
#: Our risk bands beside the published risk-probability codes (coarser: added, not replacing).
PUBLISHED_RISK = {
    "low": "low",
    "low-medium": "moderate",
    "medium": "moderate",
    "high": "high",
    "negative": "low",
    "positive": "high",
}
RISK_DISPLAY = {
    "low": "Low",
    "low-medium": "Low-medium",
    "medium": "Medium",
    "high": "High",
    "negative": "qSOFA negative",
    "positive": "qSOFA positive",
}


def score_key(score: Score, patient_id: str) -> str:
    """The digest naming one score: same method, patient, scale and input versions."""
    parts = [score.method, patient_id, str(score.scale)]
    parts += sorted(f"{name}={r.source}/{r.version}={r.value}" for name, r in score.inputs.items())
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:40]


def newest_time(score: Score) -> str | None:
    times = [r.time for r in score.inputs.values()]
    return max(times).isoformat() if times else None


def _sources(score: Score) -> list[str]:
    return sorted({r.source for r in score.inputs.values()})


def _component_code(score: Score, name: str) -> dict[str, Any]:
    prefix = "news2" if score.method == "NEWS2" else "qsofa"
    return {
        "coding": [{"system": codes.LOCAL_SYSTEM, "code": f"{prefix}-{name}"}],
        "text": codes.PARAMETER_DISPLAY[name],
    }


def _notes(score: Score) -> list[dict[str, str]]:
    texts = []
    if score.partial:
        missing = ", ".join(codes.PARAMETER_DISPLAY[n] for n in score.missing)
        texts.append(
            f"Partial {score.method}: no value within the window for {missing}; "
            "the total is a lower bound."
        )
    if score.method == "NEWS2" and score.scale == 2:
        texts.append("SpO2 scored on scale 2 (hypercapnic respiratory failure, target 88-92 %).")
    texts += list(score.notes)
    return [{"text": t} for t in texts]


def score_observation(score: Score, patient_id: str, key: str) -> dict[str, Any]:
    """The score ``Observation``: total, one component per parameter, inputs in derivedFrom."""
    parameters = codes.NEWS2_PARAMETERS if score.method == "NEWS2" else codes.QSOFA_PARAMETERS
    components = []
    for name in parameters:
        component: dict[str, Any] = {"code": _component_code(score, name)}
        if name in score.points:
            component["valueInteger"] = score.points[name]
        else:
            component["dataAbsentReason"] = {
                "coding": [{"system": DATA_ABSENT, "code": "not-performed"}],
                "text": "No value within the window",
            }
        components.append(component)
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [{"system": codes.SCORE_IDENTIFIER, "value": f"obs-{key}"}],
        "status": "preliminary" if score.partial else "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey"}]}],
        "code": {
            "coding": [{"system": codes.LOCAL_SYSTEM, "code": score.method}],
            "text": score.method,
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueInteger": score.total,
        "interpretation": [
            {
                "coding": [{"system": codes.LOCAL_SYSTEM, "code": score.risk}],
                "text": RISK_DISPLAY[score.risk],
            }
        ],
        "component": components,
        "derivedFrom": [{"reference": s} for s in _sources(score)],
    }
    if when := newest_time(score):
        observation["effectiveDateTime"] = when
    if score.partial:
        observation["meta"] = {"tag": [{"system": codes.LOCAL_SYSTEM, "code": "partial"}]}
    if notes := _notes(score):
        observation["note"] = notes
    return observation


def risk_assessment(score: Score, patient_id: str, key: str, observation_id: str) -> dict[str, Any]:
    """The ``RiskAssessment``: method, the risk band, basis = score Observation + inputs."""
    assessment: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "identifier": [{"system": codes.SCORE_IDENTIFIER, "value": f"ra-{key}"}],
        "status": "preliminary" if score.partial else "final",
        "method": {
            "coding": [{"system": codes.LOCAL_SYSTEM, "code": score.method}],
            "text": score.method,
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "basis": [{"reference": f"Observation/{observation_id}"}]
        + [{"reference": s} for s in _sources(score)],
        "prediction": [
            {
                "outcome": {
                    "text": "Clinical deterioration"
                    if score.method == "NEWS2"
                    else "Sepsis with poor outcome"
                },
                "qualitativeRisk": {
                    "coding": [
                        {
                            "system": codes.LOCAL_SYSTEM,
                            "code": score.risk,
                            "display": RISK_DISPLAY[score.risk],
                        },
                        {"system": RISK_PROBABILITY, "code": PUBLISHED_RISK[score.risk]},
                    ],
                    "text": score.risk,
                },
            }
        ],
    }
    if when := newest_time(score):
        assessment["occurrenceDateTime"] = when
    if notes := _notes(score):
        assessment["note"] = notes
    return assessment
