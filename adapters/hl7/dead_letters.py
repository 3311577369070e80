"""Dead letters: every message that was rejected or failed, stored as FHIR resources.

A dead letter is a ``Binary`` holding the exact bytes received and a ``Task`` (status
``failed``, ``statusReason`` = why, ``input`` -> the Binary) with a deterministic id, so the
same bad bytes sent again update one Task (its history keeps every attempt). When even the
store cannot take it, the bytes and the reason go to ``<data_dir>/hl7-dead-letters/`` so that
nothing is ever dropped.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fhirhub.adapters.hl7.convert.provenance import ER7_MEDIA_TYPE
from fhirhub.sdk import process_bundle, read, search

if TYPE_CHECKING:
    from fhirhub.sdk import Hub

log = logging.getLogger("fhirhub.hl7")
TASK_CODE = {"system": "urn:fhirhub:hl7v2", "code": "dead-letter"}
PREFIX = "hl7dl-"


def dead_letter_id(raw: bytes, tenant: str | None = None) -> str:
    """The same bytes from the same feed always make the same id; two tenants' feeds never
    share one (each tenant's dead letters are its own)."""
    digest = hashlib.sha256(raw if tenant is None else tenant.encode() + b"\x00" + raw)
    return PREFIX + digest.hexdigest()[:40]


def dead_letter_bundle(
    raw: bytes, *, reason: str, ack_code: str, description: str = "", tenant: str | None = None
) -> tuple[str, dict[str, Any]]:
    """The Task id and the transaction Bundle (Binary + Task) recording ``raw`` (write it as
    the system acting for ``tenant``, whose label it then carries)."""
    key = dead_letter_id(raw, tenant)
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": key,
        "status": "failed",
        "intent": "unknown",
        "code": {"coding": [TASK_CODE]},
        "description": description or "HL7 v2 message",
        "statusReason": {"text": reason[:4000]},
        "businessStatus": {"text": ack_code},
        "authoredOn": now,
        "lastModified": now,
        "input": [
            {"type": {"text": "source message"}, "valueReference": {"reference": f"Binary/{key}"}}
        ],
    }
    binary = {
        "resourceType": "Binary",
        "id": key,
        "contentType": ER7_MEDIA_TYPE,
        "data": base64.b64encode(raw).decode("ascii"),
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": binary, "request": {"method": "PUT", "url": f"Binary/{key}"}},
            {"resource": task, "request": {"method": "PUT", "url": f"Task/{key}"}},
        ],
    }
    return key, bundle


def store_dead_letter(
    hub: Hub,
    raw: bytes,
    *,
    reason: str,
    ack_code: str,
    description: str = "",
    tenant: str | None = None,
) -> str:
    """Record ``raw`` as a dead letter in its own transaction (with the caller's access: the
    system acting for ``tenant``); returns the Task id."""
    key, bundle = dead_letter_bundle(
        raw, reason=reason, ack_code=ack_code, description=description, tenant=tenant
    )
    try:
        process_bundle(hub, bundle)
    except Exception as exc:  # the store is unusable: keep the bytes on disk instead
        write_to_disk(hub, raw, reason, exc)
    log.warning("HL7 message dead-lettered as Task/%s: %s", key, reason)
    return key


def write_to_disk(hub: Hub, raw: bytes, reason: str, error: BaseException) -> None:
    """The last resort when the store cannot take a dead letter: ``<data_dir>/hl7-dead-letters/``."""
    key = dead_letter_id(raw)
    folder = hub.settings.data_dir / "hl7-dead-letters"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{key}.hl7").write_bytes(raw)
    (folder / f"{key}.reason.txt").write_text(f"{reason}\nstore error: {error}\n")
    log.error("Dead letter %s written to %s (store failed: %s)", key, folder, error)


#: Dead letters listed per search page (a search answers at most the hub's page size).
_PAGE = 500


def list_dead_letters(hub: Hub, *, include_resolved: bool = False) -> list[dict[str, Any]]:
    """The dead-letter Tasks (the caller's access applies), oldest first."""
    params = [("code", f"{TASK_CODE['system']}|{TASK_CODE['code']}")]
    if not include_resolved:
        params.append(("status", "failed"))
    tasks: list[dict[str, Any]] = []
    while True:
        page = search(
            hub,
            "Task",
            [
                *params,
                ("_sort", "_lastUpdated"),
                ("_count", str(_PAGE)),
                ("_offset", str(len(tasks))),
            ],
        )
        tasks.extend(page)
        if len(page) < _PAGE:
            return tasks


def load_dead_letter(hub: Hub, task_id: str) -> tuple[dict[str, Any], bytes]:
    """The Task and the original bytes of dead letter ``task_id``."""
    task = read(hub, "Task", task_id)
    binary = read(hub, "Binary", task_id)
    return task, base64.b64decode(binary.get("data", ""))


def mark_resolved(hub: Hub, task: dict[str, Any], note: str) -> None:
    task = dict(task)
    task.pop("meta", None)
    task["status"] = "completed"
    task["businessStatus"] = {"text": "AA"}
    task["lastModified"] = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    task["note"] = [*task.get("note", []), {"text": note}]
    process_bundle(
        hub,
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": task, "request": {"method": "PUT", "url": f"Task/{task['id']}"}}
            ],
        },
    )
