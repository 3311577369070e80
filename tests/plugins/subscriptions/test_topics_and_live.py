"""Topic-based subscriptions (Subscriptions R5 Backport for R4): payload contents, the
websocket binding with a token, server-sent events, and giving up into ``error`` then
resuming without loss."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub
from fhirhub.sdk import validation_issues
from tests.plugins.subscriptions.conftest import (
    Receiver,
    as_,
    event_numbers,
    glucose,
    notification_type,
    parameter,
    post,
    settle,
    status_of,
)

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
R5 = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic."
TOPIC = "http://example.org/fhir/SubscriptionTopic/glucose"


def topic() -> dict[str, Any]:
    return {
        "resourceType": "Basic",
        "code": {
            "coding": [{"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}]
        },
        "extension": [
            {"url": R5 + "url", "valueUri": TOPIC},
            {
                "url": R5 + "resourceTrigger",
                "extension": [
                    {
                        "url": "resource",
                        "valueUri": "http://hl7.org/fhir/StructureDefinition/Observation",
                    },
                    {"url": "supportedInteraction", "valueCode": "create"},
                    {
                        "url": "queryCriteria",
                        "extension": [{"url": "current", "valueString": "code=2339-0"}],
                    },
                ],
            },
        ],
    }


def topic_subscription(
    channel: str, payload: str, endpoint: str | None = None, filters: tuple[str, ...] = ()
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Subscription",
        "meta": {"profile": [BACKPORT + "backport-subscription"]},
        "status": "requested",
        "reason": "glucose alerts",
        "criteria": TOPIC,
        "channel": {
            "type": channel,
            "payload": "application/fhir+json",
            "_payload": {
                "extension": [{"url": BACKPORT + "backport-payload-content", "valueCode": payload}]
            },
        },
    }
    if endpoint:
        resource["channel"]["endpoint"] = endpoint
    if filters:
        resource["_criteria"] = {
            "extension": [
                {"url": BACKPORT + "backport-filter-criteria", "valueString": f} for f in filters
            ]
        }
    return resource


def classic(channel: str, payload: str, endpoint: str | None = None) -> dict[str, Any]:
    """An R4 criteria subscription using the backport's payload-content extension."""
    resource = topic_subscription(channel, payload, endpoint)
    del resource["meta"]
    resource["criteria"] = "Observation?code=2339-0"
    return resource


def test_payload_contents_and_filters(client: TestClient, hub: Hub) -> None:
    post(client, "clinician-a", topic())
    receivers = {p: Receiver() for p in ("full-resource", "id-only", "empty")}
    try:
        for payload, receiver in receivers.items():
            post(
                client,
                "clinician-a",
                topic_subscription(
                    "rest-hook", payload, receiver.url, ("Observation?value-quantity=gt200",)
                ),
            )
        post(client, "clinician-a", glucose(150))  # filtered out
        high = post(client, "clinician-a", glucose(250))
        update = {**high, "status": "amended"}
        response = client.put(
            f"/fhir/Observation/{high['id']}", json=update, headers=as_("clinician-a")
        )
        assert response.status_code == 200  # the topic triggers on create only
        settle(hub)
        for receiver in receivers.values():
            assert receiver.wait_for(1) == [1]
        full = receivers["full-resource"].notifications()[0]
        assert full["entry"][1]["resource"]["id"] == high["id"]
        ids = receivers["id-only"].notifications()[0]
        assert "resource" not in ids["entry"][1]
        assert ids["entry"][1]["fullUrl"].endswith(f"Observation/{high['id']}")
        empty = receivers["empty"].notifications()[0]
        assert len(empty["entry"]) == 1
        status = status_of(full)
        assert parameter(status, "topic") == TOPIC
        handshake = receivers["empty"].received[0]
        assert notification_type(handshake) == "handshake"
        for bundle in (full, ids, empty, handshake):
            assert validation_issues(bundle) == []
    finally:
        for receiver in receivers.values():
            receiver.close()


def test_unknown_topic_and_foreign_filter_are_refused(client: TestClient) -> None:
    response = client.post(
        "/fhir/Subscription",
        json=topic_subscription("rest-hook", "empty", "http://x"),
        headers=as_("clinician-a"),
    )
    assert response.status_code == 400 and "Unknown SubscriptionTopic" in response.text
    post(client, "clinician-a", topic())
    response = client.post(
        "/fhir/Subscription",
        json=topic_subscription("rest-hook", "empty", "http://x", ("Patient?name=x",)),
        headers=as_("clinician-a"),
    )
    assert response.status_code == 400


def test_websocket_bind_with_token(client: TestClient, hub: Hub) -> None:
    post(client, "clinician-a", topic())
    created = post(client, "clinician-a", topic_subscription("websocket", "id-only"))
    sid = created["id"]
    response = client.get(
        f"/fhir/Subscription/{sid}/$get-ws-binding-token", headers=as_("clinician-a")
    )
    assert response.status_code == 200, response.text
    values = {
        p["name"]: next(v for k, v in p.items() if k.startswith("value"))
        for p in response.json()["parameter"]
    }
    assert values["websocket-url"].endswith("/plugins/subscriptions/ws")
    refused = client.get(
        f"/fhir/Subscription/{sid}/$get-ws-binding-token", headers=as_("clinician-b")
    )
    assert refused.status_code == 404
    with client.websocket_connect("/plugins/subscriptions/ws") as socket:
        socket.send_text("bind-with-token not-a-token")
        assert socket.receive_text().startswith("error")
        socket.send_text(f"bind-with-token {values['token']}")
        handshake = json.loads(socket.receive_text())
        assert notification_type(handshake) == "handshake"
        observations = [post(client, "clinician-a", glucose(v)) for v in (201, 202, 203)]
        received = []
        while len(received) < 3:
            bundle = json.loads(socket.receive_text())
            assert notification_type(bundle) == "event-notification"
            received += event_numbers(bundle)
            assert validation_issues(bundle) == []
        assert received == [1, 2, 3]
    # What a disconnected client missed is in $events.
    post(client, "clinician-a", glucose(204))
    settle(hub)
    events = client.get(
        f"/fhir/Subscription/{sid}/$events?eventsSinceNumber=3", headers=as_("clinician-a")
    ).json()
    assert event_numbers(events) == [4]
    assert len(observations) == 3


def test_server_sent_events_resume_from_last_event_id(client: TestClient, hub: Hub) -> None:
    created = post(
        client,
        "clinician-a",
        classic("websocket", "id-only"),
    )
    sid = created["id"]
    post(client, "clinician-a", glucose(201))
    post(client, "clinician-a", glucose(202))
    settle(hub)
    assert (
        client.get(f"/plugins/subscriptions/sse/{sid}", headers=as_("clinician-b")).status_code
        == 404
    )
    with client.stream(
        "GET",
        f"/plugins/subscriptions/sse/{sid}",
        headers={**as_("clinician-a"), "Last-Event-ID": "0"},
    ) as stream:
        assert stream.status_code == 200
        ids = []
        for line in stream.iter_lines():
            if line.startswith("id: "):
                ids.append(int(line[4:]))
            if len(ids) == 2:
                break
        assert ids == [1, 2]


def test_giving_up_sets_error_and_reactivating_resumes_without_loss(
    client: TestClient, hub: Hub, receiver: Receiver
) -> None:
    from fhirhub.plugins.subscriptions.service import service_of

    service_of(hub).settings.give_up_after_s = 0.5
    created = post(
        client,
        "clinician-a",
        classic("rest-hook", "id-only", receiver.url),
    )
    receiver.wait_for(0)
    receiver.failing.set()
    post(client, "clinician-a", glucose(210))
    post(client, "clinician-a", glucose(220))
    sid = created["id"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        stored = client.get(f"/fhir/Subscription/{sid}", headers=as_("clinician-a")).json()
        if stored["status"] == "error":
            break
        time.sleep(0.1)
    assert stored["status"] == "error" and "answered 500" in stored["error"]
    post(client, "clinician-a", glucose(230))  # still queued while in error
    receiver.failing.clear()
    service_of(hub).settings.give_up_after_s = 3600
    stored["status"] = "active"
    response = client.put(f"/fhir/Subscription/{sid}", json=stored, headers=as_("clinician-a"))
    assert response.status_code == 200, response.text
    assert receiver.wait_for(3) == [1, 2, 3]
