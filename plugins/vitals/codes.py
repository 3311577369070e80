"""The codes the vitals plugin reads and writes (fixed: clients and other plugins rely on them).

Inputs are LOINC vital-signs codes (R4 §8.2.1 "Vital Signs" profile) and SNOMED CT levels of
responsiveness; outputs carry ``code.text`` "NEWS2" / "qSOFA" and a coding of the local code
system :data:`LOCAL_SYSTEM` (served by the hub as a CodeSystem), which names every score and
each component: R4's LOINC release has no code for either total.
"""

from __future__ import annotations

from typing import Final

LOINC: Final = "http://loinc.org"
SNOMED: Final = "http://snomed.info/sct"
ICD10CM: Final = "http://hl7.org/fhir/sid/icd-10-cm"
UCUM: Final = "http://unitsofmeasure.org"
#: The plugin's own code system (scores, components, alert kinds), served by the hub.
LOCAL_SYSTEM: Final = "http://fhirhub.org/CodeSystem/vitals"
#: Identifier system of the score resources: one value per (method, inputs): idempotence.
SCORE_IDENTIFIER: Final = "urn:fhirhub:vitals:score"
#: Identifier system of the alert resources: one value per (patient, episode).
ALERT_IDENTIFIER: Final = "urn:fhirhub:vitals:alert"

# Parameters (the names used throughout the plugin).
RESPIRATION = "respiration"
SPO2 = "spo2"
OXYGEN = "oxygen"
SYSTOLIC = "systolic"
PULSE = "pulse"
CONSCIOUSNESS = "consciousness"
TEMPERATURE = "temperature"
NEWS2_PARAMETERS: Final = (
    RESPIRATION,
    SPO2,
    OXYGEN,
    SYSTOLIC,
    PULSE,
    CONSCIOUSNESS,
    TEMPERATURE,
)
QSOFA_PARAMETERS: Final = (RESPIRATION, CONSCIOUSNESS, SYSTOLIC)

#: LOINC code -> parameter (the fixed input contract).
RESPIRATION_CODE = "9279-1"
SPO2_CODES = ("59408-5", "2708-6")
O2_FLOW_CODE = "3151-8"
O2_CONCENTRATION_CODE = "3150-0"
SYSTOLIC_CODE = "8480-6"
BP_PANEL_CODE = "85354-9"
PULSE_CODE = "8867-4"
TEMPERATURE_CODE = "8310-5"
CONSCIOUSNESS_CODE = "67775-7"
INPUT_CODES: Final = frozenset(
    {
        RESPIRATION_CODE,
        *SPO2_CODES,
        O2_FLOW_CODE,
        O2_CONCENTRATION_CODE,
        SYSTOLIC_CODE,
        BP_PANEL_CODE,
        PULSE_CODE,
        TEMPERATURE_CODE,
        CONSCIOUSNESS_CODE,
    }
)

#: SNOMED CT level of responsiveness -> ACVPU letter ("C" = new confusion).
ACVPU: Final = {
    "248234008": "A",
    "130987000": "C",
    "300202002": "V",
    "450847001": "P",
    "422768004": "U",
}
ACVPU_DISPLAY: Final = {
    "A": "Alert",
    "C": "New confusion",
    "V": "Responds to voice",
    "P": "Responds to pain",
    "U": "Unresponsive",
}

#: ICD-10-CM respiratory failure with hypercapnia: the SpO2 scale 2 conditions.
HYPERCAPNIC_CODES: Final = frozenset({"J96.02", "J96.12", "J96.22", "J96.92"})

PARAMETER_DISPLAY: Final = {
    RESPIRATION: "Respiration rate",
    SPO2: "SpO2",
    OXYGEN: "Air or oxygen",
    SYSTOLIC: "Systolic blood pressure",
    PULSE: "Pulse",
    CONSCIOUSNESS: "Consciousness",
    TEMPERATURE: "Temperature",
}


def code_system() -> dict[str, object]:
    """The local CodeSystem: scores, their components, and alert kinds."""
    concepts = [
        {"code": "NEWS2", "display": "National Early Warning Score 2 (RCP 2017)"},
        {"code": "qSOFA", "display": "quick Sequential Organ Failure Assessment (Sepsis-3)"},
        {"code": "partial", "display": "Score computed with parameters missing (a lower bound)"},
        {"code": "news2-alert", "display": "NEWS2 early warning alert"},
        {"code": "qsofa-alert", "display": "qSOFA sepsis alert"},
        {"code": "news2-response", "display": "Clinical response the NEWS2 chart asks for"},
        {"code": "qsofa-response", "display": "Sepsis assessment after a positive qSOFA"},
        {"code": "silence", "display": "Vitals alerts silenced for a patient"},
    ] + [
        {"code": f"news2-{name}", "display": f"NEWS2 points: {PARAMETER_DISPLAY[name]}"}
        for name in NEWS2_PARAMETERS
    ]
    concepts += [
        {"code": f"qsofa-{name}", "display": f"qSOFA point: {PARAMETER_DISPLAY[name]}"}
        for name in QSOFA_PARAMETERS
    ]
    concepts += [
        {"code": "low", "display": "NEWS2 low clinical risk (aggregate 0-4)"},
        {"code": "low-medium", "display": "NEWS2 low-medium risk (a 3 in any one parameter)"},
        {"code": "medium", "display": "NEWS2 medium clinical risk (aggregate 5-6)"},
        {"code": "high", "display": "NEWS2 high clinical risk (aggregate 7 or more)"},
        {"code": "negative", "display": "qSOFA negative (fewer than 2 criteria)"},
        {"code": "positive", "display": "qSOFA positive (2 or more criteria)"},
    ]
    return {
        "resourceType": "CodeSystem",
        "url": LOCAL_SYSTEM,
        "version": "1.0.0",
        "name": "FhirhubVitals",
        "title": "fhirhub vitals: early warning scores and alerts",
        "status": "active",
        "content": "complete",
        "caseSensitive": True,
        "concept": concepts,
    }
