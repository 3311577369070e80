"""``casemgmt_note`` -> DocumentReference, and CPP issues as Condition or Observation.

A note's revisions are rows sharing a ``uuid``; the highest ``note_id`` is the current text.
Each revision becomes a version of one DocumentReference, in ``note_id`` order, so the FHIR
history of the resource is the note's revision history; the revision's ``note_id`` is kept in
``DocumentReference.identifier`` (the ``uuid`` is the ``masterIdentifier``).

Notes filed under the cumulative patient profile's issues are also entries of their own:
social history (``SocHistory``) and family history (``FamHistory``) as Observations
(category ``social-history``), medical history and ongoing concerns (``MedHistory``,
``Concerns``) as Conditions; the note's text is the entry's text.
"""

from __future__ import annotations

import base64
from collections.abc import Container
from typing import Any

from fhirhub.adapters.oscar import codes
from fhirhub.adapters.oscar.dates import MappingError, fhir_datetime, fhir_instant
from fhirhub.adapters.oscar.mapping.context import MappingContext
from fhirhub.adapters.oscar.mapping.values import flag, text
from fhirhub.adapters.oscar.model import Note

PROGRESS_NOTE = {"system": codes.LOINC, "code": "11506-3", "display": "Progress note"}
ISSUE_SYSTEM_NAME = "issue"


def revision_of(resource: dict[str, Any], ctx: MappingContext) -> int:
    """The ``note_id`` of the revision a stored DocumentReference holds (0 when none)."""
    system = ctx.system("casemgmt_note")
    for ident in resource.get("identifier", []):
        if ident.get("system") == system and str(ident.get("value", "")).isdigit():
            return int(ident["value"])
    return 0


def document_reference(
    record: Note, ctx: MappingContext, known_providers: Container[str] | None
) -> list[dict[str, Any]]:
    if not record.demographic_no:
        raise MappingError(f"note {record.note_id} has no demographic_no")
    body = record.note if record.note is not None else ""
    archived = flag(record.archived)
    when = fhir_instant(record.update_date, ctx.zone, field="update_date")
    observed = fhir_datetime(record.observation_date, ctx.zone, field="observation_date")
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": ctx.resource_id("doc", record.document_key),
        "meta": ctx.meta(),
        "identifier": [ctx.identifier("casemgmt_note", record.note_id)],
        "status": "entered-in-error" if archived else "current",
        "docStatus": "final" if flag(record.signed) else "preliminary",
        "type": {
            "coding": [PROGRESS_NOTE],
            **({"text": text(record.encounter_type)} if text(record.encounter_type) else {}),
        },
        "category": [{"text": "Encounter note"}],
        "subject": ctx.patient_ref(record.demographic_no),
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "data": base64.b64encode(body.encode("utf-8")).decode("ascii"),
                    **({"creation": observed} if observed else {}),
                }
            }
        ],
    }
    if record.uuid:
        resource["masterIdentifier"] = ctx.identifier("casemgmt_note-uuid", record.uuid)
    if when:
        resource["date"] = when
    author = ctx.practitioner_ref(record.provider_no, known_providers)
    if author:
        resource["author"] = [author]
    signer = (
        ctx.practitioner_ref(record.signing_provider_no, known_providers)
        if flag(record.signed)
        else None
    )
    if signer and "reference" in signer:
        resource["authenticator"] = signer
    context: dict[str, Any] = {}
    if observed:
        context["period"] = {"start": observed}
    if record.appointmentNo:
        context["encounter"] = [
            {"reference": f"Encounter/{ctx.resource_id('enc', record.appointmentNo)}"}
        ]
    if context:
        resource["context"] = context
    if record.issues:
        resource["description"] = ", ".join(i.description or i.code for i in record.issues)
    return [resource, *_history_entries(record, ctx, observed, archived)]


def _history_entries(
    record: Note, ctx: MappingContext, observed: str | None, archived: bool
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    summary = text(record.note)
    if not summary:
        return out

    def issue_coding(issue: Any) -> dict[str, Any]:
        return {
            "system": ctx.system(ISSUE_SYSTEM_NAME),
            "code": issue.code,
            **({"display": issue.description} if issue.description else {}),
        }  # noqa: E731

    for issue in record.issues:
        if issue.code in codes.SOCIAL_HISTORY_ISSUES or issue.code in codes.FAMILY_HISTORY_ISSUES:
            social = issue.code in codes.SOCIAL_HISTORY_ISSUES
            loinc = (
                ("29762-2", "Social history Narrative")
                if social
                else ("10157-6", "History of family member diseases Narrative")
            )
            entry: dict[str, Any] = {
                "resourceType": "Observation",
                "id": ctx.resource_id("sh" if social else "fh", record.document_key),
                "meta": ctx.meta(),
                "identifier": [ctx.identifier("casemgmt_note", record.note_id)],
                "status": "entered-in-error" if archived else "final",
                "category": [
                    {
                        "coding": [
                            {
                                "system": codes.OBSERVATION_CATEGORY,
                                "code": "social-history",
                                "display": "Social History",
                            }
                        ]
                    }
                ],
                "code": {
                    "coding": [
                        {"system": codes.LOINC, "code": loinc[0], "display": loinc[1]},
                        issue_coding(issue),
                    ]
                },
                "subject": ctx.patient_ref(record.demographic_no),
                "valueString": summary,
                "derivedFrom": [
                    {
                        "reference": f"DocumentReference/{ctx.resource_id('doc', record.document_key)}"
                    }
                ],
            }
            if observed:
                entry["effectiveDateTime"] = observed
            out.append(entry)
        elif issue.code in codes.CONDITION_ISSUES:
            condition: dict[str, Any] = {
                "resourceType": "Condition",
                "id": ctx.resource_id("cond", record.document_key),
                "meta": ctx.meta(),
                "identifier": [ctx.identifier("casemgmt_note", record.note_id)],
                "category": [
                    {
                        "coding": [
                            {
                                "system": codes.CONDITION_CATEGORY,
                                "code": "problem-list-item",
                                "display": "Problem List Item",
                            }
                        ]
                    }
                ],
                "code": {"text": summary},
                "subject": ctx.patient_ref(record.demographic_no),
                "note": [{"text": f"OSCAR {issue.description or issue.code}"}],
            }
            if archived:
                condition["verificationStatus"] = {
                    "coding": [{"system": codes.CONDITION_VERIFICATION, "code": "entered-in-error"}]
                }
            else:
                condition["clinicalStatus"] = {
                    "coding": [
                        {
                            "system": codes.CONDITION_CLINICAL,
                            "code": "resolved" if issue.resolved else "active",
                        }
                    ]
                }
                condition["verificationStatus"] = {
                    "coding": [
                        {
                            "system": codes.CONDITION_VERIFICATION,
                            "code": "confirmed" if issue.certain else "unconfirmed",
                        }
                    ]
                }
            if observed:
                condition["recordedDate"] = observed
            out.append(condition)
    return out
