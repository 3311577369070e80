"""rest-hook delivery to a real HTTP receiver on loopback: in order, none lost, retried with
back-off through an outage, and the notification is a valid R4 Bundle."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub
from fhirhub.plugins.subscriptions import _deliverers
from fhirhub.plugins.subscriptions.delivery import Deliverer
from fhirhub.sdk import validation_issues
from tests.plugins.subscriptions.conftest import (
    Receiver,
    as_,
    event_numbers,
    glucose,
    notification_type,
    post,
    settle,
    subscription,
)

HIGH_GLUCOSE = "Observation?code=http://loinc.org|2339-0&value-quantity=gt200"


def test_matching_versions_arrive_in_order_as_valid_notifications(
    client: TestClient, hub: Hub, receiver: Receiver
) -> None:
    created = post(client, "clinician-a", subscription(HIGH_GLUCOSE, receiver.url))
    assert created["status"] == "active"
    for value in (250, 100, 300, 199, 201):
        post(client, "clinician-a", glucose(value))
    assert receiver.wait_for(3) == [1, 2, 3]
    handshake, *events = receiver.received
    assert notification_type(handshake) == "handshake"
    values = [e["resource"]["valueQuantity"]["value"] for b in events for e in b["entry"][1:]]
    assert values == [250, 300, 201]
    assert receiver.headers[1]["Authorization"] == "Bearer secret-for-the-receiver"
    for bundle in receiver.received:
        assert validation_issues(bundle) == []


def test_an_outage_delays_but_loses_nothing_and_keeps_order(
    client: TestClient, hub: Hub, receiver: Receiver
) -> None:
    post(client, "clinician-a", subscription(HIGH_GLUCOSE, receiver.url))
    post(client, "clinician-a", glucose(250))
    receiver.wait_for(1)
    receiver.failing.set()
    for value in range(210, 230):
        post(client, "clinician-a", glucose(value))
    settle(hub)
    time.sleep(1.0)  # several failed attempts, backing off
    failed_attempts = receiver.attempts
    assert receiver.event_numbers() == [1]
    receiver.failing.clear()
    numbers = receiver.wait_for(21)
    assert numbers == list(range(1, 22)), numbers  # in order, none lost, none twice here
    assert failed_attempts >= 3
    # The back-off doubles from 0.05 s (capped at 0.4 s): a second of outage is at most ~8
    # attempts, not a busy loop.
    assert failed_attempts < 20


def test_status_and_events_since_a_number(client: TestClient, hub: Hub, receiver: Receiver) -> None:
    created = post(client, "clinician-a", subscription(HIGH_GLUCOSE, receiver.url))
    for value in (250, 260, 270):
        post(client, "clinician-a", glucose(value))
    receiver.wait_for(3)
    sid = created["id"]
    status = client.get(f"/fhir/Subscription/{sid}/$status", headers=as_("clinician-a"))
    assert status.status_code == 200, status.text
    parameters = status.json()["entry"][0]["resource"]
    assert {"name": "events-since-subscription-start", "valueString": "3"} in parameters[
        "parameter"
    ]
    events = client.get(
        f"/fhir/Subscription/{sid}/$events?eventsSinceNumber=1", headers=as_("clinician-a")
    )
    assert events.status_code == 200, events.text
    bundle = events.json()
    assert notification_type(bundle) == "query-event"
    assert event_numbers(bundle) == [2, 3]
    assert [e["resource"]["valueQuantity"]["value"] for e in bundle["entry"][1:]] == [260, 270]
    assert validation_issues(bundle) == []
    bad = client.get(
        f"/fhir/Subscription/{sid}/$events?eventsSinceNumber=x", headers=as_("clinician-a")
    )
    assert bad.status_code == 400


def test_a_burst_larger_than_a_search_page_is_all_delivered(
    client: TestClient, hub: Hub, receiver: Receiver
) -> None:
    post(client, "clinician-a", subscription(HIGH_GLUCOSE, receiver.url))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": glucose(201 + i), "request": {"method": "POST", "url": "Observation"}}
            for i in range(230)
        ],
    }
    response = client.post("/fhir", json=bundle, headers=as_("clinician-a"))
    assert response.status_code == 200, response.text
    assert receiver.wait_for(230, timeout=60) == list(range(1, 231))


def test_heartbeats_and_status_of_several(client: TestClient, receiver: Receiver) -> None:
    resource = subscription(HIGH_GLUCOSE, receiver.url)
    resource["channel"]["extension"] = [
        {
            "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period",
            "valueUnsignedInt": 1,
        }
    ]
    first = post(client, "clinician-a", resource)
    second = post(client, "clinician-a", subscription(HIGH_GLUCOSE, receiver.url))
    deadline = time.monotonic() + 15
    while not receiver.notifications("heartbeat") and time.monotonic() < deadline:
        time.sleep(0.1)
    heartbeat = receiver.notifications("heartbeat")[0]
    assert validation_issues(heartbeat) == []
    response = client.get(
        f"/fhir/Subscription/$status?id={first['id']},{second['id']}", headers=as_("clinician-a")
    )
    assert response.status_code == 200, response.text
    assert response.json()["total"] == 2


def test_without_subscriptions_the_consumer_lingers_and_a_new_one_misses_nothing(
    client: TestClient, hub: Hub, receiver: Receiver
) -> None:
    """No subscription to evaluate: the consumer lingers between batches (a load is read twice
    a second, not once per commit). One created meanwhile is applied at its log position: the
    write right after it is notified, and from then on nothing lingers."""
    from fhirhub.plugins.subscriptions.service import IDLE_LINGER_S, service_of

    service = service_of(hub)
    post(client, "clinician-a", glucose(250))
    settle(hub)
    assert service.linger_s() == IDLE_LINGER_S
    post(client, "clinician-a", subscription(HIGH_GLUCOSE, receiver.url))
    post(client, "clinician-a", glucose(260))
    assert receiver.wait_for(1) == [1]
    events = [e for b in receiver.received[1:] for e in b["entry"][1:]]
    assert [e["resource"]["valueQuantity"]["value"] for e in events] == [260]
    assert service.linger_s() == 0.0


def _deliverer_of(hub: Hub) -> Deliverer:
    deliverer = _deliverers.get(hub)
    assert deliverer is not None
    return deliverer


def _first_notification_sent(
    client: TestClient, hub: Hub, receiver: Receiver
) -> tuple[Deliverer, list[int]]:
    """A subscription and its first notification, sent: the deliverer and its sender
    children."""
    post(client, "clinician-a", subscription(HIGH_GLUCOSE, receiver.url))
    post(client, "clinician-a", glucose(250))
    assert receiver.wait_for(1) == [1]
    deliverer = _deliverer_of(hub)
    children = deliverer.sender_pids()
    assert children
    return deliverer, children


def _wait(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_plain_http_notifications_are_posted_by_a_child_process_that_may_crash(
    client: TestClient, hub: Hub, receiver: Receiver
) -> None:
    """The POST is made by a child process; the child killed with a POST in flight is a
    failed attempt, retried (with a fresh child) and delivered in order."""
    deliverer, children = _first_notification_sent(client, hub, receiver)
    for pid in children:  # children of the hub's process
        with open(f"/proc/{pid}/stat") as stat:
            assert int(stat.read().rsplit(")", 1)[1].split()[1]) == os.getpid()
    receiver.holding.set()
    attempts = receiver.attempts
    post(client, "clinician-a", glucose(260))
    _wait(lambda: receiver.attempts > attempts)  # in flight, in a child
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    _wait(lambda: not set(children) & set(deliverer.sender_pids()))
    time.sleep(0.2)  # the failed attempt recorded, a retry backing off
    receiver.holding.clear()
    post(client, "clinician-a", glucose(270))
    assert receiver.wait_for(3) == [1, 2, 3]
    assert deliverer.sender_pids() and not set(children) & set(deliverer.sender_pids())
    assert receiver.attempts >= attempts + 3  # the lost one, its retry, the third


def test_the_child_processes_end_with_the_hub(
    client: TestClient, hub: Hub, receiver: Receiver
) -> None:
    deliverer, children = _first_notification_sent(client, hub, receiver)
    deliverer.stop()  # what the plugin's shutdown does
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # ended and reaped
