"""Batch and transaction Bundles (http.html#transaction), both backends."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from fastapi.testclient import TestClient

from tests.core.fhir_samples import observation, patient

FHIR = {"Content-Type": "application/fhir+json"}


def post_bundle(client: TestClient, bundle: dict[str, Any], **headers: str) -> Any:
    return client.post("/fhir", content=orjson.dumps(bundle), headers={**FHIR, **headers})


def transaction(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def count(client: TestClient, resource_type: str) -> int:
    return int(client.get(f"/fhir/{resource_type}", params={"_summary": "count"}).json()["total"])


def test_transaction_resolves_urn_uuid_references(client: TestClient) -> None:
    bundle = transaction(
        {
            "fullUrl": "urn:uuid:obs-1",
            "resource": observation("urn:uuid:pat-1"),
            "request": {"method": "POST", "url": "Observation"},
        },
        {
            "fullUrl": "urn:uuid:pat-1",
            "resource": patient(),
            "request": {"method": "POST", "url": "Patient"},
        },
    )
    response = post_bundle(client, bundle)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in result["entry"]]
    assert statuses == ["201 Created", "201 Created"]
    obs_location = result["entry"][0]["response"]["location"]
    patient_id = result["entry"][1]["response"]["location"].split("/")[1]
    stored = client.get("/fhir/" + obs_location.rsplit("/_history", 1)[0]).json()
    assert stored["subject"]["reference"] == f"Patient/{patient_id}"


def test_transaction_is_atomic(client: TestClient) -> None:
    bundle = transaction(
        {
            "fullUrl": "urn:uuid:p",
            "resource": patient(),
            "request": {"method": "POST", "url": "Patient"},
        },
        {
            "resource": {**patient(), "gender": "bogus"},
            "request": {"method": "POST", "url": "Patient"},
        },
    )
    response = post_bundle(client, bundle)
    assert response.status_code == 400
    assert "Bundle.entry[1]" in response.json()["issue"][0]["diagnostics"]
    assert count(client, "Patient") == 0


def test_transaction_with_missing_reference_stores_nothing(client: TestClient) -> None:
    bundle = transaction(
        {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
        {
            "resource": observation("Patient/missing"),
            "request": {"method": "POST", "url": "Observation"},
        },
    )
    response = post_bundle(client, bundle)
    assert response.status_code == 422
    assert count(client, "Patient") == 0 and count(client, "Observation") == 0


def test_transaction_processing_order_and_conditional_references(client: TestClient) -> None:
    existing = client.post(
        "/fhir/Patient", content=orjson.dumps(patient(mrn="A1")), headers=FHIR
    ).json()
    doomed = client.post(
        "/fhir/Patient", content=orjson.dumps(patient(mrn="D1")), headers=FHIR
    ).json()
    bundle = transaction(
        {"request": {"method": "GET", "url": f"Patient/{doomed['id']}/_history/1"}},
        {
            "resource": observation("Patient?identifier=http://hospital.example/mrn|A1"),
            "request": {"method": "POST", "url": "Observation"},
        },
        {"request": {"method": "DELETE", "url": f"Patient/{doomed['id']}"}},
        {
            "resource": {**patient(mrn="P1"), "id": "put-1"},
            "request": {"method": "PUT", "url": "Patient/put-1"},
        },
        {
            "resource": patient(mrn="A1"),
            "request": {
                "method": "POST",
                "url": "Patient",
                "ifNoneExist": "identifier=http://hospital.example/mrn|A1",
            },
        },
    )
    response = post_bundle(client, bundle)
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert entries[0]["response"]["status"] == "200 OK"
    assert entries[1]["response"]["status"] == "201 Created"
    assert entries[2]["response"]["status"] == "200 OK"
    assert entries[3]["response"]["status"] == "201 Created"
    assert entries[4]["response"]["status"] == "200 OK"  # matched, not created
    assert entries[4]["response"]["location"].startswith(f"Patient/{existing['id']}/")
    obs_id = entries[1]["response"]["location"].split("/")[1]
    assert (
        client.get(f"/fhir/Observation/{obs_id}").json()["subject"]["reference"]
        == f"Patient/{existing['id']}"
    )
    assert client.get(f"/fhir/Patient/{doomed['id']}").status_code == 410


def test_transaction_patch_entry(client: TestClient) -> None:
    pid = client.post("/fhir/Patient", content=orjson.dumps(patient()), headers=FHIR).json()["id"]
    ops = [{"op": "replace", "path": "/gender", "value": "female"}]
    binary = {
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": base64.b64encode(orjson.dumps(ops)).decode(),
    }
    response = post_bundle(
        client,
        transaction({"resource": binary, "request": {"method": "PATCH", "url": f"Patient/{pid}"}}),
    )
    assert response.status_code == 200, response.text
    assert client.get(f"/fhir/Patient/{pid}").json()["gender"] == "female"


def test_ambiguous_conditional_reference_fails(client: TestClient) -> None:
    for _ in range(2):
        client.post("/fhir/Patient", content=orjson.dumps(patient(mrn="dup")), headers=FHIR)
    bundle = transaction(
        {
            "resource": observation("Patient?identifier=http://hospital.example/mrn|dup"),
            "request": {"method": "POST", "url": "Observation"},
        }
    )
    response = post_bundle(client, bundle)
    assert response.status_code == 412
    assert count(client, "Observation") == 0


def test_batch_entries_succeed_or_fail_independently(client: TestClient) -> None:
    bundle = transaction(
        {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
        {
            "resource": {**patient(), "gender": "bogus"},
            "request": {"method": "POST", "url": "Patient"},
        },
        {"request": {"method": "GET", "url": "Patient/nobody"}},
        kind="batch",
    )
    response = post_bundle(client, bundle)
    assert response.status_code == 200
    result = response.json()
    assert result["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in result["entry"]]
    assert statuses[0] == "201 Created"
    assert (
        statuses[1] == "400"
        and result["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    )
    assert statuses[2] == "404"
    assert count(client, "Patient") == 1


def test_bundle_return_representation(client: TestClient) -> None:
    bundle = transaction({"resource": patient(), "request": {"method": "POST", "url": "Patient"}})
    result = post_bundle(client, bundle, Prefer="return=representation").json()
    assert result["entry"][0]["resource"]["resourceType"] == "Patient"


def test_malformed_bundles(client: TestClient) -> None:
    assert post_bundle(client, {"resourceType": "Bundle", "type": "collection"}).status_code == 400
    assert post_bundle(client, transaction({"resource": patient()})).status_code == 400
    assert (
        post_bundle(
            client,
            transaction(
                {
                    "fullUrl": "urn:uuid:x",
                    "resource": patient(),
                    "request": {"method": "POST", "url": "Patient"},
                },
                {
                    "fullUrl": "urn:uuid:x",
                    "resource": patient(),
                    "request": {"method": "POST", "url": "Patient"},
                },
            ),
        ).status_code
        == 400
    )
    unresolved = transaction(
        {
            "resource": observation("urn:uuid:nowhere"),
            "request": {"method": "POST", "url": "Observation"},
        }
    )
    assert post_bundle(client, unresolved).status_code == 400


def test_transaction_with_a_thousand_conditional_creates(client: TestClient) -> None:
    """Conditional creates keyed by identifier are matched together, in chunks: one statement
    for 1,200 of them failed on SQLite (an expression tree deeper than 1,000)."""

    def entry(n: int) -> dict[str, Any]:
        return {
            "resource": patient(mrn=f"M{n}"),
            "request": {
                "method": "POST",
                "url": "Patient",
                "ifNoneExist": f"identifier=http://hospital.example/mrn|M{n}",
            },
        }

    first = post_bundle(client, transaction(*[entry(n) for n in range(0, 1200, 2)]))
    assert first.status_code == 200, first.text
    response = post_bundle(client, transaction(*[entry(n) for n in range(1200)]))
    assert response.status_code == 200, response.text
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses == ["200 OK" if n % 2 == 0 else "201 Created" for n in range(1200)]
    assert count(client, "Patient") == 1200
