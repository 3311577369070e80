"""Notification Bundles as the Subscriptions Backport IG defines them for R4: a ``history``
Bundle whose first entry is the SubscriptionStatus (an R4 ``Parameters`` with the
``backport-subscription-status-r4`` profile), followed by the focus resources the payload
asks for (``full-resource``: the version that triggered; ``id-only``: its URL; ``empty``:
nothing). The same shape answers ``$status`` (without events) and ``$events``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from fhirhub.plugins.subscriptions.spec import BACKPORT, SubscriptionSpec
from fhirhub.sdk import format_instant

STATUS_PROFILE = BACKPORT + "backport-subscription-status-r4"
NOTIFICATION_PROFILE = BACKPORT + "backport-subscription-notification-r4"


@dataclass(frozen=True)
class Event:
    """One queued event of a subscription (a row of ``subscriptions_event``)."""

    number: int
    resource_type: str
    resource_id: str
    version_id: str
    interaction: str  # create | update | delete
    timestamp: str
    content: bytes | None = None

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.resource_id}"


def now_instant() -> str:
    return format_instant(time.time_ns() // 1000)


def status_parameters(
    spec: SubscriptionSpec,
    status: str,
    notification_type: str,
    events_since_start: int,
    events: list[Event],
    *,
    base_url: str,
    error: str | None = None,
) -> dict[str, Any]:
    """The SubscriptionStatus of one notification (or ``$status`` answer)."""
    parameters: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": _url(base_url, spec)}},
    ]
    if spec.topic:
        parameters.append({"name": "topic", "valueCanonical": spec.topic})
    parameters += [
        {"name": "status", "valueCode": status},
        {"name": "type", "valueCode": notification_type},
        {"name": "events-since-subscription-start", "valueString": str(events_since_start)},
    ]
    for event in events:
        part: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(event.number)},
            {"name": "timestamp", "valueInstant": event.timestamp},
        ]
        if spec.payload != "empty":
            part.append({"name": "focus", "valueReference": {"reference": _full(base_url, event)}})
        parameters.append({"name": "notification-event", "part": part})
    if error:
        parameters.append(
            {"name": "error", "valueCodeableConcept": {"text": error[:1000]}},
        )
    return {
        "resourceType": "Parameters",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": parameters,
    }


def notification_bundle(
    spec: SubscriptionSpec,
    status: str,
    notification_type: str,
    events_since_start: int,
    events: list[Event],
    *,
    base_url: str,
    error: str | None = None,
    raw: bool = False,
) -> dict[str, Any]:
    """A notification Bundle (handshake, heartbeat, event-notification, query-status,
    query-event) with the payload the subscription asked for. With ``raw``, full resources
    are the stored JSON as ``orjson.Fragment`` (not decoded): for a Bundle that only
    ``orjson.dumps`` serialises."""
    status_resource = status_parameters(
        spec, status, notification_type, events_since_start, events, base_url=base_url, error=error
    )
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{status_resource['id']}",
            "resource": status_resource,
            "request": {"method": "GET", "url": f"Subscription/{spec.id}/$status"},
            "response": {"status": "200"},
        }
    ]
    if spec.payload != "empty":
        for event in events:
            entry: dict[str, Any] = {"fullUrl": _full(base_url, event)}
            if spec.payload == "full-resource" and event.content is not None:
                entry["resource"] = (
                    orjson.Fragment(event.content) if raw else orjson.loads(event.content)
                )
            entry["request"] = _request(event)
            entry["response"] = {"status": _response_status(event)}
            entries.append(entry)
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": now_instant(),
        "entry": entries,
    }


def _url(base_url: str, spec: SubscriptionSpec) -> str:
    return f"{base_url}/Subscription/{spec.id}" if base_url else f"Subscription/{spec.id}"


def _full(base_url: str, event: Event) -> str:
    return f"{base_url}/{event.reference}" if base_url else event.reference


def _request(event: Event) -> dict[str, str]:
    if event.interaction == "create":
        return {"method": "POST", "url": event.resource_type}
    if event.interaction == "delete":
        return {"method": "DELETE", "url": event.reference}
    return {"method": "PUT", "url": event.reference}


def _response_status(event: Event) -> str:
    return {"create": "201", "delete": "204"}.get(event.interaction, "200")
