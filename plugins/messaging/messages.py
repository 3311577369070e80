"""Messages as FHIR ``Communication``: reading a mailbox, threads, read receipts, and what is
published live to open pages.

A message is a Communication with ``status`` ``in-progress`` (sent, not yet read), its
``sender``, ``recipient`` (Practitioner, PractitionerRole, CareTeam), ``subject``/``about``
(the Patient it concerns), ``inResponseTo`` (the message it answers: threads), ``payload``
(text, or an Attachment pointing at a Binary) and ``category`` (``message``,
``notification``, ``reminder``). Reading it records the receipt: ``received`` is set and the
status becomes ``completed``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from fhirhub.sdk import (
    Hub,
    StoredVersion,
    forbidden,
    format_instant,
    publish_live,
    read,
    search,
    transaction,
)

CATEGORY_SYSTEM = "http://fhirhub.org/fhir/CodeSystem/message-category"
CATEGORIES = ("message", "notification", "reminder")


def now_instant() -> str:
    return format_instant(time.time_ns() // 1000)


def live_channel(reference: str) -> str:
    return f"messaging:{reference}"


def category_of(message: dict[str, Any]) -> str:
    for concept in message.get("category", ()):
        for coding in concept.get("coding", ()):
            if coding.get("system") == CATEGORY_SYSTEM:
                return str(coding.get("code"))
    return "message"


def inbox(hub: Hub, boxes: list[str], limit: int = 200) -> list[dict[str, Any]]:
    """Messages addressed to any of ``boxes``, newest first (with the caller's access)."""
    return search(
        hub,
        "Communication",
        {"recipient": ",".join(boxes), "_sort": "-sent", "_count": str(limit)},
    )


def sent_by(hub: Hub, practitioner: str, limit: int = 200) -> list[dict[str, Any]]:
    return search(
        hub, "Communication", {"sender": practitioner, "_sort": "-sent", "_count": str(limit)}
    )


def is_unread(message: dict[str, Any]) -> bool:
    return "received" not in message and message.get("status") in ("in-progress", "preparation")


def thread_root(message: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> str:
    """The id of the first message of the thread (following ``inResponseTo``)."""
    current, seen = message, set()
    while True:
        seen.add(current["id"])
        parents = [
            r.get("reference", "").removeprefix("Communication/")
            for r in current.get("inResponseTo", ())
        ]
        parent = next((by_id[p] for p in parents if p in by_id and p not in seen), None)
        if parent is None:
            return str(current["id"])
        current = parent


def mark_read(hub: Hub, message_id: str, boxes: list[str]) -> dict[str, Any]:
    """Record the read receipt (as the caller, who must be a recipient)."""
    with transaction(hub) as tx:
        message = tx.read("Communication", message_id)
        recipients = {r.get("reference") for r in message.get("recipient", ())}
        if not recipients & set(boxes):
            raise forbidden("Only a recipient can mark a message read")
        if "received" not in message:
            message["received"] = now_instant()
            message["status"] = "completed"
            tx.update(message)
    return read(hub, "Communication", message_id)


def publish_versions(hub: Hub, versions: list[StoredVersion]) -> None:
    """Tell open pages of every recipient and sender that a message arrived or changed."""
    for version in versions:
        if version.deleted or version.content is None:
            continue
        message = orjson.loads(version.content)
        parties = {r.get("reference") for r in message.get("recipient", ())}
        parties.add((message.get("sender") or {}).get("reference"))
        event = {
            "id": version.resource_id,
            "version": version.version_id,
            "tenant": version.tenant,
            "category": category_of(message),
            "status": message.get("status"),
        }
        for party in parties - {None}:
            publish_live(hub, live_channel(str(party)), event)


def read_all(hub: Hub, boxes: list[str]) -> int:
    """Record the read receipts of every unread message to ``boxes``; how many."""
    count = 0
    with transaction(hub) as tx:
        for message in tx.search(
            "Communication",
            {"recipient": ",".join(boxes), "status": "in-progress", "_count": "500"},
        ):
            if is_unread(message):
                message["received"] = now_instant()
                message["status"] = "completed"
                tx.update(message)
                count += 1
    return count
