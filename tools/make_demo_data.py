"""Generate the demo patients shipped in ``core/demo_data/`` (``fhirhub serve --demo``).

Every patient is invented here (names, addresses, identifiers, histories); nothing comes from
real people or from other data sets. The output is deterministic: the same script always writes
byte-identical files, so ``tests/ui_shell/test_demo_data.py`` can check that the committed files
are current. Run it after changing the generator::

    .venv/bin/python tools/make_demo_data.py            # writes core/demo_data/*.json

Each file is one FHIR R4 ``transaction`` Bundle (http://hl7.org/fhir/R4/http.html#transaction):
``urn:uuid`` fullUrls, ``POST`` requests, references between entries by those fullUrls, and
one shared Organization created conditionally (``ifNoneExist``) so loading all files gives one
clinic. Vital signs follow the R4 vital-signs profiles
(http://hl7.org/fhir/R4/observation-vitalsigns.html): category ``vital-signs``, the LOINC codes
below, UCUM units, blood pressure as the 85354-9 panel with systolic and diastolic components.
"""

from __future__ import annotations

import argparse
import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "core" / "demo_data"

# Stable namespace for uuid5: fullUrls and DICOM UIDs are the same on every run.
NAMESPACE = uuid.UUID("6f1d5a52-9a4e-4b8e-9d8e-6b2f3c1d0a11")

MRN_SYSTEM = "https://fhirhub.example.org/demo/mrn"
ORG_SYSTEM = "https://fhirhub.example.org/demo/organization"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
UCUM = "http://unitsofmeasure.org"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"

ORGANIZATION = {
    "resourceType": "Organization",
    "identifier": [{"system": ORG_SYSTEM, "value": "MGCC"}],
    "active": True,
    "name": "Maple Grove Community Clinic (demo)",
    "telecom": [{"system": "phone", "value": "555-0100", "use": "work"}],
    "address": [
        {"line": ["1 Clinic Way"], "city": "Maple Grove", "state": "ZZ", "postalCode": "00100"}
    ],
}

# SNOMED CT clinical findings: (code, display, chronic?)
CONDITIONS = {
    "hypertension": ("38341003", "Hypertension", True),
    "diabetes": ("44054006", "Diabetes mellitus type 2", True),
    "prediabetes": ("15777000", "Prediabetes", True),
    "hyperlipidemia": ("55822004", "Hyperlipidemia", True),
    "knee-oa": ("239873007", "Osteoarthritis of knee", True),
    "afib": ("49436004", "Atrial fibrillation", True),
    "asthma": ("233678006", "Childhood asthma", True),
    "osteoporosis": ("64859006", "Osteoporosis", True),
    "anemia": ("271737000", "Anemia", True),
    "bronchitis": ("10509002", "Acute bronchitis", False),
    "sinusitis": ("444814009", "Viral sinusitis", False),
    "ckd3": ("433144002", "Chronic kidney disease stage 3", True),
}

# RxNorm clinical drugs, with the condition they treat and a dosage text.
MEDICATIONS = {
    "amlodipine": ("197361", "Amlodipine 5 MG Oral Tablet", "hypertension", "1 tablet daily"),
    "hctz": ("316049", "Hydrochlorothiazide 25 MG", "hypertension", "1 tablet every morning"),
    "metformin": (
        "860975",
        "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet",
        "diabetes",
        "1 tablet with the evening meal",
    ),
    "simvastatin": ("312961", "Simvastatin 20 MG Oral Tablet", "hyperlipidemia", "1 at night"),
    "warfarin": ("855332", "Warfarin Sodium 5 MG Oral Tablet", "afib", "as directed by INR"),
    "albuterol": (
        "745679",
        "200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
        "asthma",
        "2 puffs as needed",
    ),
    "fluticasone": (
        "895994",
        "120 ACTUAT Fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler",
        "asthma",
        "2 puffs twice daily",
    ),
    "alendronate": ("904419", "Alendronic acid 10 MG Oral Tablet", "osteoporosis", "1 daily"),
    "iron": ("310325", "ferrous sulfate 325 MG Oral Tablet", "anemia", "1 tablet daily"),
    "naproxen": ("849574", "Naproxen sodium 220 MG Oral Tablet", "knee-oa", "1 tablet as needed"),
    "amoxiclav": (
        "562251",
        "Amoxicillin 250 MG / Clavulanate 125 MG Oral Tablet",
        "bronchitis",
        "1 tablet three times daily for 7 days",
    ),
}

# SNOMED CT allergy findings: (code, display, category, criticality)
ALLERGIES = {
    "penicillin": ("91936005", "Allergy to penicillin", "medication", "high"),
    "peanut": ("91935009", "Allergy to peanuts", "food", "high"),
    "dander": ("232347008", "Dander (animal) allergy", "environment", "low"),
    "grass": ("418689008", "Allergy to grass pollen", "environment", "low"),
    "bee": ("424213003", "Allergy to bee venom", "environment", "high"),
    "latex": ("300916003", "Latex allergy", "environment", "low"),
    "shellfish": ("300913006", "Shellfish allergy", "food", "high"),
}

# CVX vaccine codes.
VACCINES = {
    "flu": ("140", "Influenza, seasonal, injectable, preservative free"),
    "td": ("113", "Td (adult) preservative free"),
    "tdap": ("115", "Tdap"),
    "pcv13": ("133", "Pneumococcal conjugate PCV 13"),
    "zoster": ("121", "zoster"),
    "hpv": ("62", "HPV, quadrivalent"),
    "hepb": ("08", "Hep B, adolescent or pediatric"),
}

# Imaging: (modality, study description, body site SNOMED code and display, SOP class UID)
IMAGING = {
    "chest-xr": (
        "DX",
        "Chest X-ray, 2 views",
        "51185008",
        "Thoracic structure",
        "1.2.840.10008.5.1.4.1.1.1.1",
    ),
    "knee-xr": ("DX", "Right knee X-ray", "6757004", "Right knee", "1.2.840.10008.5.1.4.1.1.1.1"),
    "head-ct": (
        "CT",
        "CT head without contrast",
        "69536005",
        "Head structure",
        "1.2.840.10008.5.1.4.1.1.2",
    ),
}

ENCOUNTER_TYPES = {
    "checkup": ("AMB", "ambulatory", "185349003", "Encounter for check up"),
    "followup": ("AMB", "ambulatory", "390906007", "Follow-up encounter"),
    "emergency": ("EMER", "emergency", "50849002", "Emergency room admission"),
}


@dataclass
class PatientSpec:
    given: list[str]
    family: str
    gender: str
    birth_date: date
    mrn: str
    line: str
    city: str
    postal_code: str
    phone: str
    conditions: list[str]
    medications: list[str]
    allergies: list[str]
    vaccines: list[str]
    imaging: list[str] = field(default_factory=list)
    # Baseline vitals at the first visit and yearly drift (weight kg/yr, systolic mmHg/yr).
    systolic: float = 122
    diastolic: float = 78
    heart_rate: float = 72
    weight: float = 70
    height: float = 170
    weight_drift: float = 0.0
    systolic_drift: float = 0.0
    height_growth: float = 0.0


PATIENTS = [
    PatientSpec(["Amara", "Jo"], "Okafor-Lindqvist", "female", date(1958, 3, 14), "100234",
                "14 Willow Lane", "Brightwater", "00211", "555-0134",
                ["hypertension", "hyperlipidemia", "knee-oa"], ["amlodipine", "simvastatin", "naproxen"],
                ["penicillin"], ["flu", "pcv13", "zoster"], ["knee-xr"],
                systolic=148, diastolic=92, heart_rate=76, weight=82, height=164,
                weight_drift=-1.5, systolic_drift=-4),
    PatientSpec(["Tobias"], "Wrenfield", "male", date(1984, 11, 2), "100235",
                "3 Harbour Row", "Eastholm", "00305", "555-0162",
                ["prediabetes", "bronchitis"], ["amoxiclav"],
                ["dander"], ["flu", "tdap"], ["chest-xr"],
                systolic=128, diastolic=82, heart_rate=68, weight=96, height=183,
                weight_drift=-2.5, systolic_drift=-1),
    PatientSpec(["Ingrid", "Maren"], "Halvorsby", "female", date(1947, 7, 21), "100236",
                "88 Birch Crescent", "Larkspur Falls", "00412", "555-0177",
                ["afib", "osteoporosis", "hypertension"], ["warfarin", "alendronate", "hctz"],
                ["latex"], ["flu", "pcv13", "zoster", "td"], ["head-ct", "chest-xr"],
                systolic=138, diastolic=80, heart_rate=84, weight=61, height=158,
                weight_drift=-0.6, systolic_drift=1),
    PatientSpec(["Mateo"], "Quintanar", "male", date(2012, 5, 9), "100237",
                "27 Orchard Street", "Brightwater", "00214", "555-0119",
                ["asthma", "sinusitis"], ["albuterol", "fluticasone"],
                ["peanut", "grass"], ["flu", "hpv", "tdap"], [],
                systolic=104, diastolic=64, heart_rate=88, weight=31, height=136,
                weight_drift=4.5, systolic_drift=1.5, height_growth=6.5),
    PatientSpec(["Priya"], "Ramanathan-Cole", "female", date(1991, 1, 30), "100238",
                "5 Lantern Court", "Eastholm", "00307", "555-0148",
                ["anemia"], ["iron"],
                [], ["flu", "tdap", "hpv"], [],
                systolic=112, diastolic=70, heart_rate=74, weight=58, height=167,
                weight_drift=0.8),
    PatientSpec(["Kwame", "Ade"], "Mensah-Boaten", "male", date(1970, 9, 17), "100239",
                "61 Quarry Road", "Larkspur Falls", "00418", "555-0190",
                ["diabetes", "hypertension", "hyperlipidemia"], ["metformin", "amlodipine", "simvastatin"],
                ["bee", "shellfish"], ["flu", "td", "pcv13"], ["chest-xr"],
                systolic=142, diastolic=88, heart_rate=78, weight=101, height=178,
                weight_drift=-3, systolic_drift=-3),
    PatientSpec(["Elodie"], "Fairbairnes", "female", date(1936, 12, 5), "100240",
                "2 Chapel Mews", "Maple Grove", "00109", "555-0105",
                ["osteoporosis", "knee-oa", "anemia"], ["alendronate", "iron"],
                ["penicillin", "dander"], ["flu", "pcv13", "zoster"], ["knee-xr"],
                systolic=132, diastolic=74, heart_rate=70, weight=54, height=152,
                weight_drift=-1.2, systolic_drift=2, height_growth=-0.4),
    PatientSpec(["Rafael"], "Antunesco", "male", date(1963, 4, 26), "100241",
                "19 Ferry Street", "Brightwater", "00219", "555-0126",
                ["afib", "hypertension", "ckd3"], ["warfarin", "hctz"],
                [], ["flu", "td", "zoster"], ["head-ct"],
                systolic=136, diastolic=86, heart_rate=92, weight=88, height=175,
                weight_drift=0.5, systolic_drift=-2),
    PatientSpec(["Yuki"], "Tanabeck", "female", date(2001, 8, 11), "100242",
                "44 Kite Hill", "Eastholm", "00311", "555-0153",
                ["sinusitis", "bronchitis"], ["amoxiclav"],
                ["latex"], ["flu", "hpv", "hepb"], [],
                systolic=110, diastolic=68, heart_rate=66, weight=55, height=160,
                weight_drift=0.4),
]  # fmt: skip

FIRST_VISIT = date(2022, 1, 10)
VISITS = 7


def urn(*parts: object) -> str:
    return f"urn:uuid:{uuid.uuid5(NAMESPACE, '/'.join(str(p) for p in parts))}"


def dicom_uid(*parts: object) -> str:
    """A UUID-derived DICOM UID (PS3.5 B.2: ``2.25.<uuid as integer>``)."""
    return f"2.25.{uuid.uuid5(NAMESPACE, '/'.join(str(p) for p in parts)).int}"


def instant(day: date, hour: int, minute: int = 0) -> str:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC).isoformat()


def concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def quantity(value: float, unit: str, code: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


def entry(full_url: str, resource: dict[str, Any], **request: str) -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **request},
    }


class BundleBuilder:
    """Builds one patient's transaction Bundle."""

    def __init__(self, spec: PatientSpec) -> None:
        self.spec = spec
        self.key = spec.mrn
        self.rng = random.Random(int(spec.mrn))
        self.patient = urn(self.key, "Patient")
        self.org = urn("Organization", "MGCC")
        self.entries: list[dict[str, Any]] = []

    def build(self) -> dict[str, Any]:
        self.entries.append(
            entry(self.org, ORGANIZATION, ifNoneExist=f"identifier={ORG_SYSTEM}|MGCC")
        )
        self.entries.append(entry(self.patient, self._patient()))
        visits = self._visit_dates()
        encounters = [self._encounter(i, day) for i, day in enumerate(visits)]
        for index, (day, encounter) in enumerate(zip(visits, encounters, strict=True)):
            self._vitals(index, day, encounter)
        self._conditions(visits, encounters)
        self._medications(visits, encounters)
        self._allergies(visits)
        self._immunizations(visits, encounters)
        self._imaging(visits, encounters)
        return {"resourceType": "Bundle", "type": "transaction", "entry": self.entries}

    def _patient(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "resourceType": "Patient",
            "identifier": [
                {
                    "use": "usual",
                    "type": concept(IDENTIFIER_TYPE, "MR", "Medical record number"),
                    "system": MRN_SYSTEM,
                    "value": spec.mrn,
                }
            ],
            "active": True,
            "name": [{"use": "official", "family": spec.family, "given": spec.given}],
            "telecom": [{"system": "phone", "value": spec.phone, "use": "home"}],
            "gender": spec.gender,
            "birthDate": spec.birth_date.isoformat(),
            "address": [
                {
                    "use": "home",
                    "line": [spec.line],
                    "city": spec.city,
                    "state": "ZZ",
                    "postalCode": spec.postal_code,
                    "country": "ZZ",
                }
            ],
            "managingOrganization": {"reference": self.org},
        }

    def _visit_dates(self) -> list[date]:
        days: list[date] = []
        current = FIRST_VISIT + timedelta(days=self.rng.randint(0, 60))
        for _ in range(VISITS):
            days.append(current)
            current += timedelta(days=self.rng.randint(200, 290))
        return days

    def _encounter(self, index: int, day: date) -> str:
        kind = "checkup" if index % 3 == 0 else "followup"
        if index == 4 and self.spec.imaging:
            kind = "emergency"
        class_code, class_display, code, display = ENCOUNTER_TYPES[kind]
        full_url = urn(self.key, "Encounter", index)
        hour = 8 + self.rng.randint(0, 8)
        self.entries.append(
            entry(
                full_url,
                {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": {"system": ACT_CODE, "code": class_code, "display": class_display},
                    "type": [concept(SNOMED, code, display)],
                    "subject": {"reference": self.patient},
                    "period": {"start": instant(day, hour), "end": instant(day, hour, 45)},
                    "serviceProvider": {"reference": self.org},
                },
            )
        )
        return full_url

    def _observation(
        self, key: str, day: date, encounter: str, code: str, display: str, **value: Any
    ) -> None:
        self.entries.append(
            entry(
                urn(self.key, "Observation", key),
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "category": [concept(OBS_CATEGORY, "vital-signs", "Vital Signs")],
                    "code": concept(LOINC, code, display),
                    "subject": {"reference": self.patient},
                    "encounter": {"reference": encounter},
                    "effectiveDateTime": instant(day, 9, 10),
                    **value,
                },
            )
        )

    def _vitals(self, index: int, day: date, encounter: str) -> None:
        spec, rng = self.spec, self.rng
        years = (day - FIRST_VISIT).days / 365.25
        systolic = round(spec.systolic + spec.systolic_drift * years + rng.uniform(-6, 6))
        diastolic = round(spec.diastolic + spec.systolic_drift * years / 2 + rng.uniform(-4, 4))
        self._observation(
            f"bp-{index}",
            day,
            encounter,
            "85354-9",
            "Blood pressure panel with all children optional",
            component=[
                {
                    "code": concept(LOINC, "8480-6", "Systolic blood pressure"),
                    "valueQuantity": quantity(systolic, "mmHg", "mm[Hg]"),
                },
                {
                    "code": concept(LOINC, "8462-4", "Diastolic blood pressure"),
                    "valueQuantity": quantity(diastolic, "mmHg", "mm[Hg]"),
                },
            ],
        )
        heart_rate = round(spec.heart_rate + rng.uniform(-7, 7))
        self._observation(
            f"hr-{index}",
            day,
            encounter,
            "8867-4",
            "Heart rate",
            valueQuantity=quantity(heart_rate, "beats/minute", "/min"),
        )
        weight = round(spec.weight + spec.weight_drift * years + rng.uniform(-0.8, 0.8), 1)
        self._observation(
            f"weight-{index}",
            day,
            encounter,
            "29463-7",
            "Body weight",
            valueQuantity=quantity(weight, "kg", "kg"),
        )
        height = round(spec.height + spec.height_growth * years, 1)
        self._observation(
            f"height-{index}",
            day,
            encounter,
            "8302-2",
            "Body height",
            valueQuantity=quantity(height, "cm", "cm"),
        )
        temperature = round(36.7 + rng.uniform(-0.4, 0.5), 1)
        self._observation(
            f"temp-{index}",
            day,
            encounter,
            "8310-5",
            "Body temperature",
            valueQuantity=quantity(temperature, "°C", "Cel"),
        )

    def _conditions(self, visits: list[date], encounters: list[str]) -> None:
        for number, name in enumerate(self.spec.conditions):
            code, display, chronic = CONDITIONS[name]
            visit = min(number * 2, len(visits) - 1) if chronic else 3
            onset = visits[visit]
            resource: dict[str, Any] = {
                "resourceType": "Condition",
                "clinicalStatus": concept(
                    CONDITION_CLINICAL,
                    "active" if chronic else "resolved",
                    "Active" if chronic else "Resolved",
                ),
                "verificationStatus": concept(CONDITION_VERIFICATION, "confirmed", "Confirmed"),
                "category": [
                    concept(CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis")
                ],
                "code": concept(SNOMED, code, display),
                "subject": {"reference": self.patient},
                "encounter": {"reference": encounters[visit]},
                "onsetDateTime": instant(onset, 9, 30),
                "recordedDate": instant(onset, 9, 40),
            }
            if not chronic:
                resource["abatementDateTime"] = instant(onset + timedelta(days=14), 12)
            self.entries.append(entry(urn(self.key, "Condition", name), resource))

    def _medications(self, visits: list[date], encounters: list[str]) -> None:
        for name in self.spec.medications:
            code, display, treats, dosage = MEDICATIONS[name]
            chronic = CONDITIONS[treats][2]
            visit = min(self.spec.conditions.index(treats) * 2, len(visits) - 1) if chronic else 3
            self.entries.append(
                entry(
                    urn(self.key, "MedicationRequest", name),
                    {
                        "resourceType": "MedicationRequest",
                        "status": "active" if chronic else "completed",
                        "intent": "order",
                        "medicationCodeableConcept": concept(RXNORM, code, display),
                        "subject": {"reference": self.patient},
                        "encounter": {"reference": encounters[visit]},
                        "authoredOn": instant(visits[visit], 9, 50),
                        "reasonReference": [{"reference": urn(self.key, "Condition", treats)}],
                        "dosageInstruction": [{"text": dosage}],
                    },
                )
            )

    def _allergies(self, visits: list[date]) -> None:
        for name in self.spec.allergies:
            code, display, category, criticality = ALLERGIES[name]
            self.entries.append(
                entry(
                    urn(self.key, "AllergyIntolerance", name),
                    {
                        "resourceType": "AllergyIntolerance",
                        "clinicalStatus": concept(ALLERGY_CLINICAL, "active", "Active"),
                        "verificationStatus": concept(
                            ALLERGY_VERIFICATION, "confirmed", "Confirmed"
                        ),
                        "type": "allergy",
                        "category": [category],
                        "criticality": criticality,
                        "code": concept(SNOMED, code, display),
                        "patient": {"reference": self.patient},
                        "recordedDate": instant(visits[0], 9, 20),
                    },
                )
            )

    def _immunizations(self, visits: list[date], encounters: list[str]) -> None:
        for number, name in enumerate(self.spec.vaccines):
            code, display = VACCINES[name]
            # Influenza every autumn-ish visit, the others once.
            given = [i for i in range(len(visits)) if i % 2 == 0] if name == "flu" else [number]
            for visit in given:
                self.entries.append(
                    entry(
                        urn(self.key, "Immunization", name, visit),
                        {
                            "resourceType": "Immunization",
                            "status": "completed",
                            "vaccineCode": concept(CVX, code, display),
                            "patient": {"reference": self.patient},
                            "encounter": {"reference": encounters[visit]},
                            "occurrenceDateTime": instant(visits[visit], 10),
                            "primarySource": True,
                        },
                    )
                )

    def _imaging(self, visits: list[date], encounters: list[str]) -> None:
        for number, name in enumerate(self.spec.imaging):
            modality, description, site_code, site_display, sop_class = IMAGING[name]
            visit = 4 if number == 0 else 5
            study_uid = dicom_uid(self.key, "study", name)
            series_uid = dicom_uid(self.key, "series", name)
            instances = 2 if modality == "DX" else 3
            self.entries.append(
                entry(
                    urn(self.key, "ImagingStudy", name),
                    {
                        "resourceType": "ImagingStudy",
                        "identifier": [
                            {"system": "urn:dicom:uid", "value": f"urn:oid:{study_uid}"}
                        ],
                        "status": "available",
                        "modality": [{"system": DCM, "code": modality}],
                        "subject": {"reference": self.patient},
                        "encounter": {"reference": encounters[visit]},
                        "started": instant(visits[visit], 11),
                        "numberOfSeries": 1,
                        "numberOfInstances": instances,
                        "description": description,
                        "series": [
                            {
                                "uid": series_uid,
                                "number": 1,
                                "modality": {"system": DCM, "code": modality},
                                "description": description,
                                "numberOfInstances": instances,
                                "bodySite": {
                                    "system": SNOMED,
                                    "code": site_code,
                                    "display": site_display,
                                },
                                "instance": [
                                    {
                                        "uid": dicom_uid(self.key, "instance", name, n),
                                        "sopClass": {
                                            "system": "urn:ietf:rfc:3986",
                                            "code": f"urn:oid:{sop_class}",
                                        },
                                        "number": n,
                                    }
                                    for n in range(1, instances + 1)
                                ],
                            }
                        ],
                    },
                )
            )


def validate(bundle: dict[str, Any]) -> None:
    """Parse the Bundle and every entry with the R4B models (structure, types, cardinality)."""
    get_fhir_model_class("Bundle").model_validate(bundle)
    for item in bundle["entry"]:
        resource = item["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def file_name(spec: PatientSpec, number: int) -> str:
    slug = "-".join([spec.given[0], spec.family]).lower()
    return f"{number:02d}-{slug}.json"


def render(bundle: dict[str, Any]) -> str:
    """Compact JSON with one entry per line: small files whose diffs stay readable."""

    def compact(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    head = compact({k: v for k, v in bundle.items() if k != "entry"})[:-1]
    entries = ",\n".join(compact(item) for item in bundle["entry"])
    return f'{head},"entry":[\n{entries}\n]}}\n'


#: The same people as other systems know them, for the master patient index (docs/mpi.md):
#: the laboratory's record of Amara Okafor-Lindqvist (the MPI links it: one person, one chart)
#: and the radiology system's "Toby Wrenfeld", born 1984-02-11 at another address (day and
#: month swapped, a nickname, a typo: the MPI sends it to the duplicate review queue).
OTHER_SOURCES_FILE = "10-other-sources.json"
LAB_SYSTEM = "https://fhirhub.example.org/demo/lab-id"
RIS_SYSTEM = "https://fhirhub.example.org/demo/ris-id"


def other_sources_bundle() -> dict[str, Any]:
    lab_patient = urn("lab", "Patient")
    lab = {
        "resourceType": "Patient",
        "identifier": [{"system": LAB_SYSTEM, "value": "LAB-58814"}],
        "name": [{"family": "Okafor-Lindqvist", "given": ["Amara"]}],
        "telecom": [{"system": "phone", "value": "555-0134"}],
        "gender": "female",
        "birthDate": "1958-03-14",
    }
    hba1c = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {"coding": [{"system": OBS_CATEGORY, "code": "laboratory", "display": "Laboratory"}]}
        ],
        "code": concept(LOINC, "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"),
        "subject": {"reference": lab_patient},
        "effectiveDateTime": instant(date(2026, 3, 2), 8, 40),
        "valueQuantity": quantity(6.1, "%", "%"),
    }
    radiology = {
        "resourceType": "Patient",
        "identifier": [{"system": RIS_SYSTEM, "value": "RIS-20931"}],
        "name": [{"family": "Wrenfeld", "given": ["Toby"]}],
        "gender": "male",
        "birthDate": "1984-02-11",
        "address": [{"line": ["9 Mill Road"], "city": "Eastholm", "postalCode": "00999"}],
    }
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            entry(lab_patient, lab),
            entry(urn("lab", "Observation", "hba1c"), hba1c),
            entry(urn("ris", "Patient"), radiology),
        ],
    }


def generate() -> dict[str, str]:
    """``{file name: JSON text}`` for every demo patient, then the other sources' records."""
    files: dict[str, str] = {}
    for number, spec in enumerate(PATIENTS, 1):
        bundle = BundleBuilder(spec).build()
        validate(bundle)
        files[file_name(spec, number)] = render(bundle)
    others = other_sources_bundle()
    validate(others)
    files[OTHER_SOURCES_FILE] = render(others)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for stale in args.out.glob("*.json"):
        stale.unlink()
    total = 0
    for name, text in generate().items():
        (args.out / name).write_text(text, encoding="utf-8")
        total += len(text.encode())
    print(f"Wrote {len(PATIENTS)} Bundles ({total // 1024} KiB) to {args.out}")


if __name__ == "__main__":
    main()
