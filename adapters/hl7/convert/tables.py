"""HL7 v2 code tables (shipped as data/v2-tables.json, derived by tools/derive_hl7_tables.py)
and the v2-to-FHIR vocabulary maps of the HL7 v2-to-FHIR IG that the converter needs."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

_DATA = Path(__file__).resolve().parent.parent / "data" / "v2-tables.json"

#: CWE.3 coding system names (HL7 table 0396) -> FHIR code system URLs
#: (http://hl7.org/fhir/R4/terminologies-systems.html).
CODING_SYSTEMS = {
    "LN": "http://loinc.org",
    "LOINC": "http://loinc.org",
    "SCT": "http://snomed.info/sct",
    "SNM": "http://snomed.info/sct",
    "SNOMED": "http://snomed.info/sct",
    "SNOMED-CT": "http://snomed.info/sct",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "I9": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "CVX": "http://hl7.org/fhir/sid/cvx",
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "RXN": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "C4": "http://www.ama-assn.org/go/cpt",
    "CPT": "http://www.ama-assn.org/go/cpt",
    "UCUM": "http://unitsofmeasure.org",
    "ANSI+": "http://unitsofmeasure.org",
    "ISO+": "http://unitsofmeasure.org",
    "MVX": "http://hl7.org/fhir/sid/mvx",
    "NCIT": "http://ncimeta.nci.nih.gov",
    "ISO3166_1": "urn:iso:std:iso:3166",
    "ISO639": "urn:ietf:bcp:47",
    "CDCREC": "urn:oid:2.16.840.1.113883.6.238",
}


@cache
def _tables() -> dict[str, dict[str, Any]]:
    loaded: dict[str, dict[str, Any]] = json.loads(_DATA.read_text(encoding="utf-8"))
    return loaded


def table_system(table: str) -> str:
    return f"http://terminology.hl7.org/CodeSystem/v2-{table}"


def display(table: str | None, code: str) -> str | None:
    if not table:
        return None
    found = _tables().get(table)
    return found["concepts"].get(code) if found else None


def known(table: str, code: str) -> bool:
    found = _tables().get(table)
    return found is not None and code in found["concepts"]


def concept(table: str, code: str, text: str | None = None) -> dict[str, Any]:
    """A CodeableConcept for ``code`` in HL7 table ``table`` (display from the table)."""
    coding: dict[str, Any] = {"system": table_system(table), "code": code}
    shown = display(table, code)
    if shown:
        coding["display"] = shown
    result: dict[str, Any] = {"coding": [coding]}
    if text:
        result["text"] = text
    return result


def code_system_url(name: str) -> str:
    """A CWE.3 name as a URL: known names, ``HL7nnnn`` tables, URIs/OIDs, else a local URN."""
    upper = name.strip().upper()
    if upper in CODING_SYSTEMS:
        return CODING_SYSTEMS[upper]
    if upper.startswith("HL7") and upper[3:].isdigit():
        return table_system(upper[3:].zfill(4))
    if upper.startswith(("HTTP://", "HTTPS://", "URN:")):
        return name.strip()
    if name.replace(".", "").isdigit() and "." in name:
        return f"urn:oid:{name}"
    return f"urn:fhirhub:hl7v2:cs:{quote(name.strip(), safe='')}"


# -- IG concept maps (v2 table -> FHIR value set) --------------------------------------------

#: Table 0001 -> AdministrativeGender (IG ConceptMap "Table 0001 to Administrative Gender").
GENDER = {"M": "male", "F": "female", "O": "other", "A": "other", "N": "other", "U": "unknown"}

#: Table 0004 -> v3 ActEncounterCode (IG ConceptMap "Table 0004 to Encounter Class"). Codes
#: the map leaves out (R recurring patient, C commercial account, N not applicable, U unknown)
#: have no encounter class: they become the v3 null flavor UNK, never a guessed class.
ENCOUNTER_CLASS = {
    "E": ("EMER", "emergency"),
    "I": ("IMP", "inpatient encounter"),
    "O": ("AMB", "ambulatory"),
    "P": ("PRENC", "pre-admission"),
    "B": ("IMP", "inpatient encounter"),
}
NULL_FLAVOR = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

#: Table 0085 -> ObservationStatus (IG ConceptMap "Table 0085 to Observation Status").
OBSERVATION_STATUS = {
    "C": "corrected",
    "D": "entered-in-error",
    "F": "final",
    "I": "registered",
    "N": "cancelled",
    "O": "registered",
    "P": "preliminary",
    "R": "preliminary",
    "S": "preliminary",
    "U": "final",
    "W": "entered-in-error",
    "X": "cancelled",
    "A": "amended",
}

#: Table 0123 -> DiagnosticReportStatus.
REPORT_STATUS = {
    "O": "registered",
    "I": "registered",
    "S": "registered",
    "A": "partial",
    "P": "preliminary",
    "C": "corrected",
    "R": "partial",
    "F": "final",
    "X": "cancelled",
    "Y": "unknown",
    "Z": "unknown",
}

#: Table 0119 (order control) / 0038 (order status) -> ServiceRequest.status.
ORDER_STATUS = {
    "NW": "active",
    "OK": "active",
    "SC": "active",
    "XO": "active",
    "RP": "active",
    "CA": "revoked",
    "OC": "revoked",
    "CR": "revoked",
    "DC": "revoked",
    "OD": "revoked",
    "HD": "on-hold",
    "OH": "on-hold",
    "RL": "active",
    "CM": "completed",
}

#: SIU trigger events -> Appointment.status (IG message map SIU_S12..S15).
APPOINTMENT_STATUS = {
    "S12": "booked",
    "S13": "booked",
    "S14": "booked",
    "S15": "cancelled",
    "S16": "cancelled",
    "S17": "cancelled",
    "S26": "noshow",
}

#: Table 0127 (allergen type) -> AllergyIntolerance.category / type.
ALLERGY_CATEGORY = {
    "DA": "medication",
    "FA": "food",
    "EA": "environment",
    "MA": "medication",
    "LA": "environment",
    "PA": "environment",
    "AA": "environment",
}
#: Table 0128 (allergy severity) -> AllergyIntolerance.criticality.
ALLERGY_CRITICALITY = {"SV": "high", "MO": "low", "MI": "low", "U": "unable-to-assess"}

#: PV1-2 values that mean the encounter ended (A03 discharge sets it explicitly).
ENCOUNTER_STATUS_BY_EVENT = {
    "A01": "in-progress",
    "A02": "in-progress",
    "A03": "finished",
    "A04": "arrived",
    "A05": "planned",
    "A06": "in-progress",
    "A07": "in-progress",
    "A11": "cancelled",
    "A13": "in-progress",
    "A14": "planned",
    "A27": "cancelled",
}
