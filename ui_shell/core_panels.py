"""The patient chart's own panels, registered through ``ui_patient_panels`` like any plugin's.

A built-in plugin named ``core-ui-panels``. Search
parameters are the R4 ``patient`` parameters of each type (clinical-patient, or
``Immunization-patient`` / ``AllergyIntolerance-patient``); vital signs are selected by the
observation category from http://hl7.org/fhir/R4/observation-vitalsigns.html.
"""

from __future__ import annotations

from typing import Any

from fhirhub.sdk import hookimpl

PANELS: list[dict[str, Any]] = [
    {"id": "demographics", "title": "Demographics", "order": 10, "resource_types": ["Patient"],
     "renderer": "demographics"},
    {"id": "vitals", "title": "Vital signs", "order": 20, "resource_types": ["Observation"],
     "params": "category=vital-signs", "renderer": "vitals"},
    {"id": "encounters", "title": "Encounters", "order": 30, "resource_types": ["Encounter"]},
    {"id": "conditions", "title": "Conditions", "order": 40, "resource_types": ["Condition"],
     "form": "add-condition"},
    {"id": "medications", "title": "Medications", "order": 50,
     "resource_types": ["MedicationRequest", "MedicationStatement"]},
    {"id": "allergies", "title": "Allergies", "order": 60,
     "resource_types": ["AllergyIntolerance"]},
    {"id": "immunizations", "title": "Immunizations", "order": 70,
     "resource_types": ["Immunization"]},
    {"id": "observations", "title": "Observations", "order": 80,
     "resource_types": ["Observation"]},
    {"id": "imaging", "title": "Imaging studies", "order": 90,
     "resource_types": ["ImagingStudy"]},
]  # fmt: skip


@hookimpl
def ui_patient_panels(hub: Any) -> list[dict[str, Any]]:
    return [dict(panel) for panel in PANELS]
