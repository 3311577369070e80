"""AI output written to the record: a draft note (``DocumentReference``, ``docStatus``
``preliminary``, tagged ``ai-draft``) with a ``Provenance`` naming the model, its version, the
prompt hash and the sources of the answer it came from. It takes effect only when a clinician
signs it (``docStatus`` ``final``, the signer as ``authenticator``, a second Provenance with the
signer as ``verifier``); :func:`guard_write` refuses any other way of finalising it.
"""

from __future__ import annotations

import base64
from contextvars import ContextVar
from typing import Any

import orjson

from fhirhub.sdk import (
    Access,
    FhirError,
    Hub,
    WriteContext,
    acting_as,
    conflict,
    current_access,
    forbidden,
    invalid,
    read,
    system_for,
    transaction,
)

from .record import CODE_SYSTEM, PARTICIPANT, SUBJECT_SYSTEM, now

DRAFT_TAG = {"system": CODE_SYSTEM, "code": "ai-draft"}
SIGNER_ROLES = ("clinician", "practitioner", "physician", "nurse")
#: The draft whose sign-off is writing in this context (the guard lets that write through).
_signing: ContextVar[str | None] = ContextVar("ai_signing", default=None)


def _is_draft(resource: dict[str, Any]) -> bool:
    return any(
        t.get("system") == CODE_SYSTEM and t.get("code") == "ai-draft"
        for t in (resource.get("meta") or {}).get("tag") or []
    )


def _answer_provenance(hub: Hub, answer_ref: str) -> dict[str, Any] | None:
    from fhirhub.sdk import search

    found = search(hub, "Provenance", {"target": answer_ref, "_count": "20"})
    return next(
        (p for p in found if (p.get("activity") or {}).get("text") == "AI-generated answer"),
        None,
    )


def create_draft(hub: Hub, answer_ref: str, title: str | None) -> dict[str, Any]:
    """A draft note from a stored answer (``Communication/ID``), as the caller."""
    access = current_access()
    access.require_role(*SIGNER_ROLES)
    kind, _, ident = answer_ref.partition("/")
    if kind != "Communication" or not ident:
        raise invalid("'answer' must reference the assistant's Communication")
    answer = read(hub, "Communication", ident)
    if not any(
        c.get("code") == "ai-answer"
        for cat in answer.get("category") or []
        for c in cat.get("coding") or []
    ):
        raise invalid("That Communication is not an answer of the assistant")
    subject = (answer.get("subject") or {}).get("reference")
    if not subject:
        raise invalid("The answer is about no patient; a note needs one")
    text = str((answer.get("payload") or [{}])[0].get("contentString") or "")
    source = _answer_provenance(hub, answer_ref) or {}
    note = {
        "resourceType": "DocumentReference",
        "meta": {"tag": [DRAFT_TAG]},
        "status": "current",
        "docStatus": "preliminary",
        "type": {"text": "AI-drafted note"},
        "subject": {"reference": subject},
        "date": now(),
        "description": title or "AI-drafted note (needs a clinician's sign-off)",
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "data": base64.b64encode(text.encode()).decode(),
                    "title": title or "AI draft",
                }
            }
        ],
    }
    with transaction(hub) as tx:
        written = tx.create(note)
        entities = [
            e for e in source.get("entity") or [] if e.get("role") in ("source", "derivation")
        ]
        entities.append({"role": "source", "what": {"reference": answer_ref}})
        # The Provenance is the hub's record of what happened, written as the system for the
        # caller's tenant (clinicians hold no scope on Provenance).
        with acting_as(system_for(access.tenant)):
            tx.create(
                {
                    "resourceType": "Provenance",
                    "target": [{"reference": written.version.reference}],
                    "recorded": now(),
                    "activity": {"text": "AI-drafted note"},
                    "agent": [
                        *[a for a in source.get("agent") or [] if _is_code(a, "assembler")],
                        {
                            "type": {"coding": [{"system": PARTICIPANT, "code": "enterer"}]},
                            "who": _who(access),
                        },
                    ],
                    "entity": entities,
                }
            )
    return read(hub, "DocumentReference", written.version.resource_id)


def _is_code(agent: dict[str, Any], code: str) -> bool:
    return any(c.get("code") == code for c in (agent.get("type") or {}).get("coding") or [])


def _who(access: Access) -> dict[str, Any]:
    return {"identifier": {"system": SUBJECT_SYSTEM, "value": access.subject}}


def sign_draft(hub: Hub, draft_id: str) -> dict[str, Any]:
    """A clinician's sign-off: the draft becomes final, with its attestation."""
    access = current_access()
    if access.is_system:
        raise forbidden("A draft is signed by a clinician, not by the system")
    access.require_role(*SIGNER_ROLES)
    note = read(hub, "DocumentReference", draft_id)
    if not _is_draft(note):
        raise invalid("That DocumentReference is not an AI draft")
    if note.get("docStatus") != "preliminary":
        raise conflict("The draft is already signed")
    note["docStatus"] = "final"
    note["authenticator"] = _who(access)
    token = _signing.set(draft_id)
    try:
        with transaction(hub) as tx:
            written = tx.update(note, if_match=f'W/"{note["meta"]["versionId"]}"')
            with acting_as(system_for(access.tenant)):
                tx.create(
                    {
                        "resourceType": "Provenance",
                        "target": [{"reference": f"DocumentReference/{draft_id}"}],
                        "recorded": now(),
                        "activity": {"text": "Signed off by a clinician"},
                        "agent": [
                            {
                                "type": {"coding": [{"system": PARTICIPANT, "code": "verifier"}]},
                                "who": _who(access),
                            }
                        ],
                        "entity": [
                            {
                                "role": "revision",
                                "what": {"reference": f"DocumentReference/{draft_id}"},
                            }
                        ],
                    }
                )
    finally:
        _signing.reset(token)
    return read(hub, "DocumentReference", written.version.resource_id)


def guard_write(resource: dict[str, Any], context: WriteContext) -> None:
    """Refuse finalising an AI draft except through :func:`sign_draft`."""
    if resource.get("resourceType") != "DocumentReference":
        return
    previous = context.previous
    was_draft = (
        previous is not None
        and not previous.deleted
        and previous.content is not None
        and _is_draft(orjson.loads(previous.content))
        and orjson.loads(previous.content).get("docStatus") == "preliminary"
    )
    if not was_draft and not _is_draft(resource):
        return
    if _is_draft(resource) and resource.get("docStatus") in (None, "preliminary"):
        return
    if _signing.get() == str(resource.get("id")):
        return
    raise FhirError(
        409,
        "An AI draft becomes final only through its sign-off "
        "(POST /plugins/ai/v1/drafts/{id}/sign)",
        code="business-rule",
    )
