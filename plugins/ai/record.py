"""What the assistant writes to the record: each question and answer as a ``Communication``
of one conversation thread, and a ``Provenance`` for every answer naming the model, its
version, the hash of the prompt it was given and the sources it drew on.

Written as the system *for the caller's tenant*, so a read-only token (a patient's app) still
leaves its trail, labelled with its tenant, and the conversation is visible to whoever may read
that patient's Communications.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fhirhub.sdk import Access, Hub, acting_as, system_for, transaction

CODE_SYSTEM = "https://fhirhub.dev/CodeSystem/ai"
CONVERSATION_SYSTEM = "urn:fhirhub:ai:conversation"
SUBJECT_SYSTEM = "urn:fhirhub:subject"
MODEL_SYSTEM = "urn:fhirhub:ai:model"
PROMPT_HASH_SYSTEM = "urn:fhirhub:ai:prompt-sha256"
PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"


@dataclass(frozen=True)
class Written:
    question: str
    answer: str
    provenance: str


def prompt_hash(messages: list[dict[str, Any]]) -> str:
    """SHA-256 of the exact messages sent to the model (canonical JSON)."""
    text = json.dumps(messages, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _communication(
    conversation: str, kind: str, text: str, sender: dict[str, Any], patient: str | None
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Communication",
        "identifier": [{"system": CONVERSATION_SYSTEM, "value": conversation}],
        "status": "completed",
        "category": [{"coding": [{"system": CODE_SYSTEM, "code": kind}]}],
        "sent": now(),
        "sender": sender,
        "payload": [{"contentString": text}],
    }
    if patient:
        resource["subject"] = {"reference": f"Patient/{patient}"}
    return resource


def write_exchange(
    hub: Hub,
    access: Access,
    *,
    conversation: str,
    patient: str | None,
    question: str,
    answer: str,
    model: str,
    model_version: str,
    prompt_sha256: str,
    sources: list[str],
) -> Written:
    """Store one question, its answer and the answer's Provenance, in one transaction."""
    asker = {"identifier": {"system": SUBJECT_SYSTEM, "value": access.subject}}
    device = {
        "identifier": {"system": MODEL_SYSTEM, "value": model},
        "display": f"{model} {model_version}".strip(),
    }
    with acting_as(system_for(access.tenant)), transaction(hub) as tx:
        asked = tx.create(_communication(conversation, "ai-question", question, asker, patient))
        reply = _communication(conversation, "ai-answer", answer, device, patient)
        reply["inResponseTo"] = [{"reference": asked.version.reference}]
        reply["note"] = [{"text": "AI-generated; not reviewed by a clinician."}]
        answered = tx.create(reply)
        entities: list[dict[str, Any]] = [
            {"role": "source", "what": {"reference": ref}} for ref in dict.fromkeys(sources)
        ]
        entities.append(
            {
                "role": "derivation",
                "what": {
                    "identifier": {"system": PROMPT_HASH_SYSTEM, "value": prompt_sha256},
                    "display": "the prompt sent to the model",
                },
            }
        )
        provenance = tx.create(
            {
                "resourceType": "Provenance",
                "target": [{"reference": answered.version.reference}],
                "recorded": now(),
                "activity": {"text": "AI-generated answer"},
                "agent": [
                    {
                        "type": {"coding": [{"system": PARTICIPANT, "code": "assembler"}]},
                        "who": device,
                    },
                    {
                        "type": {"coding": [{"system": PARTICIPANT, "code": "informant"}]},
                        "who": asker,
                    },
                ],
                "entity": entities,
            }
        )
    return Written(
        _plain(asked.version.reference),
        _plain(answered.version.reference),
        _plain(provenance.version.reference),
    )


def _plain(reference: str) -> str:
    """``Type/id`` without ``/_history/n``."""
    return "/".join(reference.split("/")[:2])
