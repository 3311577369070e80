"""Criteria use the REST search code (chains, ``_has``, modifiers), bad criteria are refused
at create, and a subscription sees only what its owner may read: its tenant, its patient."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub
from tests.plugins.subscriptions.conftest import (
    Receiver,
    as_,
    glucose,
    post,
    settle,
    subscription,
)


def focus_ids(receiver: Receiver) -> list[str]:
    return [
        entry["resource"]["id"]
        for bundle in receiver.notifications()
        for entry in bundle["entry"][1:]
    ]


def patient(family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family}]}


BAD_CRITERIA = [
    "Observation?foo=bar",
    "Observation?code:bogus=x",
    "Observation?value-quantity=zz200",
    "Observation?subject:Patient.nothing=1",
    "Nonsense?code=1",
    "just text",
]
BAD_CHANNELS = [
    ({"type": "email", "endpoint": "mailto:x@example.org"}, "not supported"),
    ({"type": "rest-hook", "endpoint": "ftp://example.org"}, "http(s)"),
    ({"type": "rest-hook", "endpoint": "http://x", "header": ["no colon"]}, "Name: value"),
    ({"type": "rest-hook", "endpoint": "http://x", "payload": "text/csv"}, "not supported"),
]


def test_what_cannot_be_honoured_is_refused_at_create(client: TestClient) -> None:
    for criteria in BAD_CRITERIA:
        response = client.post(
            "/fhir/Subscription",
            json=subscription(criteria, "http://127.0.0.1:9/hook"),
            headers=as_("clinician-a"),
        )
        assert response.status_code == 400, (criteria, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
    for channel, message in BAD_CHANNELS:
        resource = subscription("Observation?code=1", "http://x")
        resource["channel"] = channel
        response = client.post("/fhir/Subscription", json=resource, headers=as_("clinician-a"))
        assert response.status_code == 400, channel
        assert message in response.text
    listed = client.get("/fhir/Subscription", headers=as_("clinician-a")).json()
    assert listed.get("total") == 0  # nothing stored


def event_count(client: TestClient, sid: str, headers: dict[str, str]) -> int:
    response = client.get(f"/fhir/Subscription/{sid}/$status", headers=headers)
    assert response.status_code == 200, response.text
    for p in response.json()["entry"][0]["resource"]["parameter"]:
        if p["name"] == "events-since-subscription-start":
            return int(p["valueString"])
    raise AssertionError("no event count")


def test_chains_has_and_token_modifiers(client: TestClient, hub: Hub, receiver: Receiver) -> None:
    smith = post(client, "clinician-a", patient("Smith"))
    jones = post(client, "clinician-a", patient("Jones"))
    chained = post(
        client,
        "clinician-a",
        subscription("Observation?subject:Patient.name=Smith&code=2339-0", receiver.url),
    )
    negated = Receiver()
    try:
        post(
            client,
            "clinician-a",
            subscription("Observation?code:not=http://loinc.org|2339-0", negated.url),
        )
        has = Receiver()
        try:
            post(
                client,
                "clinician-a",
                subscription("Patient?_has:Observation:subject:code=2339-0", has.url),
            )
            for_smith = post(client, "clinician-a", glucose(120, smith["id"]))
            post(client, "clinician-a", glucose(130, jones["id"]))
            other_code = glucose(5)
            other_code["code"]["coding"][0]["code"] = "718-7"
            other = post(client, "clinician-a", other_code)
            # A Patient version written after an Observation points at it.
            updated = {**smith, "gender": "female"}
            response = client.put(
                f"/fhir/Patient/{smith['id']}", json=updated, headers=as_("clinician-a")
            )
            assert response.status_code == 200
            post(client, "clinician-a", patient("Nobody"))
            settle(hub)
            receiver.wait_for(1)
            negated.wait_for(1)
            has.wait_for(1)
            assert focus_ids(receiver) == [for_smith["id"]]
            assert focus_ids(negated) == [other["id"]]
            assert focus_ids(has) == [smith["id"]]
        finally:
            has.close()
    finally:
        negated.close()
    assert chained["status"] == "active"


def test_a_subscription_sees_only_its_owners_tenant(
    client: TestClient, hub: Hub, receiver: Receiver
) -> None:
    created = post(client, "clinician-a", subscription("Observation?code=2339-0", receiver.url))
    post(client, "clinician-b", glucose(300))
    mine = post(client, "clinician-a", glucose(301))
    settle(hub)
    receiver.wait_for(1)
    post(client, "clinician-b", glucose(302))
    settle(hub)
    assert focus_ids(receiver) == [mine["id"]]
    assert event_count(client, created["id"], as_("clinician-a")) == 1
    # The other tenant cannot see the subscription, nor read its status or events.
    sid = client.get("/fhir/Subscription", headers=as_("clinician-a")).json()["entry"][0][
        "resource"
    ]["id"]
    assert client.get(f"/fhir/Subscription/{sid}", headers=as_("clinician-b")).status_code == 404
    for operation in ("$status", "$events", "$get-ws-binding-token"):
        response = client.get(f"/fhir/Subscription/{sid}/{operation}", headers=as_("clinician-b"))
        assert response.status_code == 404, (operation, response.text)
    # Another user of the same tenant sees the Subscription but not the owner's events.
    response = client.get(f"/fhir/Subscription/{sid}/$events", headers=as_("other-a"))
    assert response.status_code == 403


def test_a_patient_context_subscription_sees_only_its_patient(
    client: TestClient, hub: Hub, receiver: Receiver
) -> None:
    mine = post(client, "clinician-a", patient("Mine"))
    other = post(client, "clinician-a", patient("Other"))
    response = client.post(
        "/fhir/Subscription",
        json=subscription("Observation?code=2339-0", receiver.url),
        headers={"X-Test-Patient": mine["id"], "Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 201, response.text
    sid = response.json()["id"]
    post(client, "clinician-a", glucose(300, other["id"]))
    seen = post(client, "clinician-a", glucose(310, mine["id"]))
    post(client, "clinician-a", glucose(320))  # no subject: in no patient's compartment
    settle(hub)
    receiver.wait_for(1)
    post(client, "clinician-a", glucose(330, other["id"]))
    settle(hub)
    assert focus_ids(receiver) == [seen["id"]]
    patient_headers = {"X-Test-Patient": mine["id"]}
    assert event_count(client, sid, patient_headers) == 1


def test_a_chain_is_searched_only_for_versions_passing_its_simple_part(
    client: TestClient, hub: Hub, receiver: Receiver, monkeypatch: Any
) -> None:
    from fhirhub.plugins.subscriptions import service

    smith = post(client, "clinician-a", patient("Smith"))
    post(
        client,
        "clinician-a",
        subscription("Observation?subject:Patient.name=Smith&code=2339-0", receiver.url),
    )
    settle(hub)
    searched: list[tuple[str, ...]] = []
    original = service.matching

    def counting(hub: Hub, resource_type: str, criteria: str, ids: Any) -> set[str]:
        searched.append(tuple(ids))
        return original(hub, resource_type, criteria, ids)

    monkeypatch.setattr(service, "matching", counting)
    other_code = glucose(5, smith["id"])
    other_code["code"]["coding"][0]["code"] = "718-7"
    post(client, "clinician-a", other_code)
    settle(hub)
    assert searched == []  # no version of the batch has code 2339-0: no search
    wanted = post(client, "clinician-a", glucose(120, smith["id"]))
    settle(hub)
    assert searched == [(wanted["id"],)]
    receiver.wait_for(1)
    assert focus_ids(receiver) == [wanted["id"]]
