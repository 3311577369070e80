"""The codes and URLs the MPI writes into FHIR resources, in one place."""

from __future__ import annotations

from typing import Any

#: The MPI's own CodeSystem (registered through ``register_code_systems``).
CODE_SYSTEM = "http://fhirhub.org/fhir/CodeSystem/mpi"
#: ``Task.identifier.system`` of review Tasks: the value names the pair (``a:b``, sorted).
REVIEW_IDENTIFIER = "http://fhirhub.org/fhir/sid/mpi-review"
#: ``Person.identifier.system`` of master records created by the MPI.
PERSON_IDENTIFIER = "http://fhirhub.org/fhir/sid/mpi-person"
#: FHIR's match-grade extension (http://hl7.org/fhir/R4/extension-match-grade.html).
MATCH_GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"

REVIEW_TASK = "review-match"

ACTIVITIES = {
    "link": "Records linked as the same person",
    "unlink": "Record unlinked from its person",
    "merge": "Patient merged into another",
    "unmerge": "Patient merge undone",
    "review-opened": "Possible duplicate sent to review",
    "review-accepted": "Reviewer confirmed the same person",
    "review-rejected": "Reviewer judged not the same person",
}


def coding(code: str) -> dict[str, str]:
    display = ACTIVITIES.get(code) or {REVIEW_TASK: "Review a possible duplicate patient"}[code]
    return {"system": CODE_SYSTEM, "code": code, "display": display}


def code_system() -> dict[str, Any]:
    return {
        "resourceType": "CodeSystem",
        "url": CODE_SYSTEM,
        "name": "FhirhubMpi",
        "title": "fhirhub master patient index activities and tasks",
        "status": "active",
        "content": "complete",
        "concept": [
            {"code": code, "display": display}
            for code, display in {
                **ACTIVITIES,
                REVIEW_TASK: "Review a possible duplicate patient",
            }.items()
        ],
    }
