"""Small FHIR resources used across the REST tests."""

from __future__ import annotations

from typing import Any


def patient(
    family: str = "Chalmers", given: str = "Peter", mrn: str = "12345", **extra: Any
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": "http://hospital.example/mrn", "value": mrn}],
        "name": [{"family": family, "given": [given]}],
        "gender": "male",
        "birthDate": "1974-12-25",
    }
    resource.update(extra)
    return resource


def observation(
    subject: str, code: str = "8867-4", value: float = 72, **extra: Any
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": subject},
        "effectiveDateTime": "2024-03-01T10:00:00Z",
        "valueQuantity": {
            "value": value,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }
    resource.update(extra)
    return resource
