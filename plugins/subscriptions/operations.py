"""``$status``, ``$events`` and ``$get-ws-binding-token`` on Subscription (Subscriptions R5
Backport IG operations, R4 form).

Who may ask: whoever can read the Subscription (its tenant) *and* owns it (the same subject),
or an administrator, or the system. Events were selected with the owner's eyes, so showing
them to another user of the tenant could show what that user may not read.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert

from fhirhub.plugins.subscriptions import model
from fhirhub.plugins.subscriptions.service import State, SubscriptionService, service_of
from fhirhub.sdk import (
    FhirError,
    Hub,
    Operation,
    OperationCall,
    current_access,
    forbidden,
    invalid,
    not_found,
    read,
)

ADMIN_ROLES = frozenset({"super_admin", "app_admin", "org_admin"})
WS_PATH = "/plugins/subscriptions/ws"
#: How long an operation on a Subscription written a moment ago waits for it to take effect.
SETTLING_S = 5.0


def owned_state(hub: Hub, subscription_id: str) -> tuple[SubscriptionService, State]:
    """The subscription's state, after checking the caller may see and owns it."""
    read(hub, "Subscription", subscription_id)  # 404 when not visible to the caller
    service = service_of(hub)
    # Events go out as soon as they are numbered and are stored just after: what a receiver
    # was sent, $status counts and $events returns.
    service.wait_stored(timeout=SETTLING_S)
    state = service.state(subscription_id)
    deadline = time.monotonic() + SETTLING_S
    while state is None and time.monotonic() < deadline:
        # Just created: it takes effect when the log follower reaches it (milliseconds).
        time.sleep(0.05)
        state = service.state(subscription_id)
    if state is None:
        raise not_found(f"Subscription/{subscription_id} is not (yet) active")
    access = current_access()
    if not (access.is_system or access.roles & ADMIN_ROLES):
        owner = service.owner(subscription_id, state.tenant)
        if owner.subject != access.subject or owner.tenant != access.tenant:
            raise forbidden("Only the owner of a Subscription may read its events")
    return service, state


def _number(call: OperationCall, name: str) -> int | None:
    values = call.parameters.get(name)
    if not values:
        return None
    try:
        number = int(str(values[0]))
    except ValueError:
        raise invalid(f"{name} must be an integer") from None
    if number < 0:
        raise invalid(f"{name} must not be negative")
    return number


def _status(call: OperationCall) -> dict[str, Any]:
    ids = [call.resource_id] if call.resource_id else _ids(call)
    entries = []
    for subscription_id in ids:
        service, state = owned_state(call.hub, subscription_id)
        bundle = service.bundle(state, "query-status", [])
        status = bundle["entry"][0]["resource"]
        entries.append(
            {
                "fullUrl": f"urn:uuid:{status['id']}",
                "resource": status,
                "search": {"mode": "match"},
            }
        )
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}


def _ids(call: OperationCall) -> list[str]:
    ids = [part for value in call.parameters.get("id", ()) for part in str(value).split(",")]
    if not ids:
        raise invalid("$status at type level needs one or more id parameters")
    return [i.strip() for i in ids if i.strip()]


def _events(call: OperationCall) -> dict[str, Any]:
    if not call.resource_id:
        raise invalid("$events is invoked on one Subscription")
    service, state = owned_state(call.hub, call.resource_id)
    since = _number(call, "eventsSinceNumber") or 0
    until = _number(call, "eventsUntilNumber")
    content = (call.parameters.get("content") or [state.spec.payload])[0]
    if content not in ("empty", "id-only", "full-resource"):
        raise invalid("content must be empty, id-only or full-resource")
    if content == "full-resource" and state.spec.payload != "full-resource":
        raise FhirError(
            400,
            "full-resource content is kept only for subscriptions asking for it",
            code="not-supported",
        )
    events = service.events(call.resource_id, since=since, until=until)
    spec = state.spec
    if content != spec.payload:
        from dataclasses import replace

        state.spec = replace(spec, payload=content)
    return service.bundle(state, "query-event", events)


def _binding_token(call: OperationCall) -> dict[str, Any]:
    ids = [call.resource_id] if call.resource_id else _ids(call)
    service = service_of(call.hub)
    for subscription_id in ids:
        _, state = owned_state(call.hub, subscription_id)
        if state.spec.channel != "websocket":
            raise invalid(f"Subscription/{subscription_id} does not use the websocket channel")
    token = secrets.token_urlsafe(32)
    expires = time.time() + service.settings.binding_token_s
    with service.db.begin() as conn:
        conn.execute(
            delete(model.binding_token).where(model.binding_token.c.expires_at < time.time())
        )
        conn.execute(
            insert(model.binding_token).values(
                token=token, subscriptions=" ".join(ids), expires_at=expires
            )
        )
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "token", "valueString": token},
            {
                "name": "expiration",
                "valueDateTime": datetime.fromtimestamp(expires, UTC).isoformat(timespec="seconds"),
            },
            *({"name": "subscription", "valueString": i} for i in ids),
            {"name": "websocket-url", "valueUrl": websocket_url(service, call.base_url)},
        ],
    }


def websocket_url(service: SubscriptionService, base_url: str) -> str:
    base = service.settings.websocket_base or base_url.removesuffix("/").removesuffix("/fhir")
    if base.startswith("http"):
        base = "ws" + base[4:]
    return base + WS_PATH


def operations() -> list[Operation]:
    subscription = ("Subscription",)
    return [
        Operation(
            "status",
            _status,
            type_level=True,
            instance=True,
            resource_types=subscription,
            description="The status of subscriptions (Subscriptions Backport IG)",
            definition_url="http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status",
        ),
        Operation(
            "events",
            _events,
            instance=True,
            resource_types=subscription,
            description="Past events of a subscription, by event number",
            definition_url="http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events",
        ),
        Operation(
            "get-ws-binding-token",
            _binding_token,
            type_level=True,
            instance=True,
            resource_types=subscription,
            description="A token to bind a websocket to subscriptions",
            definition_url="http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-get-ws-binding-token",
        ),
    ]
