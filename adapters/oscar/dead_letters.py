"""Dead letters: OSCAR records that could not be mapped or stored, kept as FHIR resources.

A dead letter is a ``Binary`` holding the record exactly as the source gave it (JSON) and a
``Task`` (status ``failed``, ``statusReason`` = why, ``input`` -> the Binary), with an id
derived from the OSCAR instance, table and key: the same record failing again updates the same
Task (its history keeps every attempt), and when the record later syncs the Task is
``completed``. They are written in the same transaction as the batch they came from, so a
record is either stored, or a dead letter, never neither.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from fhirhub.adapters.oscar.mapping.context import OSCAR_TAG_SYSTEM, MappingContext
from fhirhub.adapters.oscar.model import OscarRecord
from fhirhub.adapters.oscar.state import now_text
from fhirhub.sdk import Transaction

TASK_CODE = {
    "system": OSCAR_TAG_SYSTEM,
    "code": "dead-letter",
    "display": "OSCAR record not synced",
}


def task_id(ctx: MappingContext, stream: str, key: str) -> str:
    return ctx.resource_id("dl", f"{stream}.{key}")


def write_dead_letter(
    tx: Transaction, ctx: MappingContext, stream: str, record: OscarRecord, reason: str
) -> str:
    """Store the Binary and the failed Task of ``record``; returns the Task id."""
    key = task_id(ctx, stream, record.key)
    stamp = now_text()
    binary = {
        "resourceType": "Binary",
        "id": key,
        "meta": ctx.meta(),
        "contentType": "application/json",
        "data": base64.b64encode(orjson.dumps({"table": record.table, "row": record.raw})).decode(
            "ascii"
        ),
    }
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": key,
        "meta": ctx.meta(),
        "identifier": [ctx.identifier(stream, record.key)],
        "status": "failed",
        "intent": "unknown",
        "code": {"coding": [TASK_CODE]},
        "description": f"OSCAR {record.table} {record.key}",
        "statusReason": {"text": reason[:4000]},
        "authoredOn": stamp,
        "lastModified": stamp,
        "input": [
            {"type": {"text": "source record"}, "valueReference": {"reference": f"Binary/{key}"}}
        ],
    }
    tx.update(binary)
    tx.update(task)
    return key


def resolve(tx: Transaction, task_key: str, note: str) -> None:
    """Mark a dead letter's Task completed (its record has now synced)."""
    current = tx.current("Task", task_key)
    if current is None or current.deleted or not current.content:
        return
    task = orjson.loads(current.content)
    if task.get("status") != "failed":
        return
    task.pop("meta", None)
    task["status"] = "completed"
    task["lastModified"] = now_text()
    task["note"] = [*task.get("note", []), {"text": note}]
    tx.update(task)
