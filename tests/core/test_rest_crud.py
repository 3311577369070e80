"""Create, read, vread, update, patch, delete over the REST API (http.html), both backends."""

from __future__ import annotations

import time
import uuid

import orjson
from fastapi.testclient import TestClient

from tests.core.fhir_samples import observation, patient

FHIR = {"Content-Type": "application/fhir+json"}


def test_create_returns_201_with_location_etag_and_the_stored_json(client: TestClient) -> None:
    response = client.post("/fhir/Patient", content=orjson.dumps(patient()), headers=FHIR)
    assert response.status_code == 201
    body = response.json()
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert "last-modified" in response.headers
    assert body["meta"]["versionId"] == "1"
    assert body["name"] == [{"family": "Chalmers", "given": ["Peter"]}]


def test_stored_json_keeps_the_clients_element_order(client: TestClient) -> None:
    sent = {
        "resourceType": "Patient",
        "gender": "female",
        "birthDate": "1990-01-01",
        "active": True,
    }
    created = client.post("/fhir/Patient", content=orjson.dumps(sent), headers=FHIR).json()
    read = client.get(f"/fhir/Patient/{created['id']}")
    keys = list(orjson.loads(read.content))
    assert keys == ["resourceType", "id", "meta", "gender", "birthDate", "active"]


def test_read_vread_and_update_make_versions(client: TestClient) -> None:
    created = client.post("/fhir/Patient", content=orjson.dumps(patient()), headers=FHIR).json()
    pid = created["id"]
    changed = {**created, "gender": "other"}
    updated = client.put(f"/fhir/Patient/{pid}", content=orjson.dumps(changed), headers=FHIR)
    assert updated.status_code == 200
    assert updated.headers["etag"] == 'W/"2"'
    assert client.get(f"/fhir/Patient/{pid}").json()["gender"] == "other"
    first = client.get(f"/fhir/Patient/{pid}/_history/1")
    assert first.status_code == 200 and first.json()["gender"] == "male"
    assert client.get(f"/fhir/Patient/{pid}/_history/9").status_code == 404


def test_an_update_that_changes_nothing_makes_no_version(client: TestClient) -> None:
    created = client.post("/fhir/Patient", content=orjson.dumps(patient()), headers=FHIR).json()
    pid = created["id"]
    again = {**created, "meta": {"versionId": "1", "lastUpdated": "2001-01-01T00:00:00Z"}}
    response = client.put(f"/fhir/Patient/{pid}", content=orjson.dumps(again), headers=FHIR)
    assert response.status_code == 200
    assert response.headers["etag"] == 'W/"1"'
    assert response.json()["meta"]["lastUpdated"] == created["meta"]["lastUpdated"]
    history = client.get(f"/fhir/Patient/{pid}/_history").json()
    assert history["total"] == 1
    changed = {**created, "gender": "other"}
    response = client.put(f"/fhir/Patient/{pid}", content=orjson.dumps(changed), headers=FHIR)
    assert response.headers["etag"] == 'W/"2"'
    # After a delete the same content is a new version again (the resource comes back).
    assert client.delete(f"/fhir/Patient/{pid}").status_code in (200, 204)
    response = client.put(f"/fhir/Patient/{pid}", content=orjson.dumps(changed), headers=FHIR)
    assert (response.status_code, response.headers["etag"]) == (201, 'W/"4"')


def test_update_as_create_with_client_id(client: TestClient) -> None:
    response = client.put(
        "/fhir/Patient/mine-1", content=orjson.dumps({**patient(), "id": "mine-1"}), headers=FHIR
    )
    assert response.status_code == 201
    assert client.get("/fhir/Patient/mine-1").json()["id"] == "mine-1"


def test_update_with_mismatched_id_is_400(client: TestClient) -> None:
    response = client.put(
        "/fhir/Patient/a", content=orjson.dumps({**patient(), "id": "b"}), headers=FHIR
    )
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_if_match_optimistic_locking(client: TestClient) -> None:
    created = client.post("/fhir/Patient", content=orjson.dumps(patient()), headers=FHIR).json()
    pid = created["id"]
    body = orjson.dumps({**created, "active": True})
    ok = client.put(f"/fhir/Patient/{pid}", content=body, headers={**FHIR, "If-Match": 'W/"1"'})
    assert ok.status_code == 200
    stale = client.put(f"/fhir/Patient/{pid}", content=body, headers={**FHIR, "If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["issue"][0]["code"] == "conflict"


def test_conditional_reads_304(client: TestClient) -> None:
    created = client.post("/fhir/Patient", content=orjson.dumps(patient()), headers=FHIR)
    pid = created.json()["id"]
    etag = created.headers["etag"]
    assert client.get(f"/fhir/Patient/{pid}", headers={"If-None-Match": etag}).status_code == 304
    assert client.get(f"/fhir/Patient/{pid}", headers={"If-None-Match": 'W/"7"'}).status_code == 200
    modified = created.headers["last-modified"]
    assert (
        client.get(f"/fhir/Patient/{pid}", headers={"If-Modified-Since": modified}).status_code
        == 304
    )


def test_delete_then_read_is_410_and_history_keeps_the_tombstone(client: TestClient) -> None:
    pid = client.post("/fhir/Patient", content=orjson.dumps(patient()), headers=FHIR).json()["id"]
    assert client.delete(f"/fhir/Patient/{pid}").status_code == 204
    gone = client.get(f"/fhir/Patient/{pid}")
    assert gone.status_code == 410
    assert gone.json()["resourceType"] == "OperationOutcome"
    assert client.delete(f"/fhir/Patient/{pid}").status_code == 204  # idempotent
    history = client.get(f"/fhir/Patient/{pid}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    assert "resource" not in history["entry"][0]


def test_read_unknown_is_404_and_unknown_type_is_404(client: TestClient) -> None:
    assert client.get("/fhir/Patient/nope").status_code == 404
    response = client.get("/fhir/Spaceship/1")
    assert response.status_code == 404
    assert "Spaceship" in response.json()["issue"][0]["diagnostics"]


def test_json_patch(client: TestClient) -> None:
    pid = client.post("/fhir/Patient", content=orjson.dumps(patient()), headers=FHIR).json()["id"]
    ops = [
        {"op": "replace", "path": "/gender", "value": "female"},
        {"op": "add", "path": "/active", "value": True},
    ]
    response = client.patch(
        f"/fhir/Patient/{pid}",
        content=orjson.dumps(ops),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert response.status_code == 200
    body = response.json()
    assert (
        body["gender"] == "female" and body["active"] is True and body["meta"]["versionId"] == "2"
    )
    bad = [{"op": "replace", "path": "/gender", "value": "bogus"}]
    rejected = client.patch(
        f"/fhir/Patient/{pid}",
        content=orjson.dumps(bad),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert rejected.status_code == 400
    assert client.get(f"/fhir/Patient/{pid}").json()["gender"] == "female"


def test_prefer_return(client: TestClient) -> None:
    minimal = client.post(
        "/fhir/Patient",
        content=orjson.dumps(patient()),
        headers={**FHIR, "Prefer": "return=minimal"},
    )
    assert minimal.status_code == 201 and minimal.content == b"" and "location" in minimal.headers
    outcome = client.post(
        "/fhir/Patient",
        content=orjson.dumps(patient()),
        headers={**FHIR, "Prefer": "return=OperationOutcome"},
    )
    assert outcome.json()["resourceType"] == "OperationOutcome"


def test_conditional_create_update_delete(client: TestClient) -> None:
    headers = {**FHIR, "If-None-Exist": "identifier=http://hospital.example/mrn|777"}
    first = client.post("/fhir/Patient", content=orjson.dumps(patient(mrn="777")), headers=headers)
    second = client.post("/fhir/Patient", content=orjson.dumps(patient(mrn="777")), headers=headers)
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    put = client.put(
        "/fhir/Patient?identifier=http://hospital.example/mrn|777",
        content=orjson.dumps(patient(mrn="777", gender="female")),
        headers=FHIR,
    )
    assert put.status_code == 200 and put.json()["id"] == first.json()["id"]
    created = client.put(
        "/fhir/Patient?identifier=http://hospital.example/mrn|888",
        content=orjson.dumps(patient(mrn="888")),
        headers=FHIR,
    )
    assert created.status_code == 201
    client.post("/fhir/Patient", content=orjson.dumps(patient(mrn="999")), headers=FHIR)
    client.post("/fhir/Patient", content=orjson.dumps(patient(mrn="999")), headers=FHIR)
    several = client.put(
        "/fhir/Patient?identifier=http://hospital.example/mrn|999",
        content=orjson.dumps(patient(mrn="999")),
        headers=FHIR,
    )
    assert several.status_code == 412
    deleted = client.delete("/fhir/Patient?identifier=http://hospital.example/mrn|888")
    assert deleted.status_code == 204
    assert client.get(f"/fhir/Patient/{created.json()['id']}").status_code == 410


def test_reference_to_missing_resource_is_rejected(client: TestClient) -> None:
    response = client.post(
        "/fhir/Observation", content=orjson.dumps(observation("Patient/ghost")), headers=FHIR
    )
    assert response.status_code == 422
    issue = response.json()["issue"][0]
    assert "Patient/ghost" in issue["diagnostics"] and issue["expression"] == [
        "Observation.subject"
    ]


def test_history_levels_since_and_paging(client: TestClient) -> None:
    ids = [
        client.post(
            "/fhir/Patient", content=orjson.dumps(patient(mrn=str(i))), headers=FHIR
        ).json()["id"]
        for i in range(5)
    ]
    pid = ids[0]
    obs = client.post(
        "/fhir/Observation", content=orjson.dumps(observation(f"Patient/{pid}")), headers=FHIR
    ).json()
    system = client.get("/fhir/_history", params={"_count": 2}).json()
    assert system["total"] == 6 and len(system["entry"]) == 2
    assert system["entry"][0]["resource"]["id"] == obs["id"]
    next_url = next(link["url"] for link in system["link"] if link["relation"] == "next")
    client.post("/fhir/Patient", content=orjson.dumps(patient(mrn="late")), headers=FHIR)
    page2 = client.get(next_url.replace("http://testserver", "")).json()
    assert [e["resource"]["id"] for e in page2["entry"]] == [ids[3], ids[2]]  # snapshot: stable
    by_type = client.get("/fhir/Observation/_history").json()
    assert by_type["total"] == 1
    since = obs["meta"]["lastUpdated"]
    recent = client.get("/fhir/_history", params={"_since": since}).json()
    assert {e["resource"]["id"] for e in recent["entry"]} >= {obs["id"]}
    assert ids[1] not in {e["resource"]["id"] for e in recent["entry"]}


def test_history_at(client: TestClient) -> None:
    created = client.post("/fhir/Patient", content=orjson.dumps(patient()), headers=FHIR).json()
    pid = created["id"]
    client.put(
        f"/fhir/Patient/{pid}", content=orjson.dumps({**created, "gender": "female"}), headers=FHIR
    )
    at = client.get(
        f"/fhir/Patient/{pid}/_history", params={"_at": created["meta"]["lastUpdated"]}
    ).json()
    assert [e["resource"]["meta"]["versionId"] for e in at["entry"]] == ["1"]


def test_capability_statement_is_generated(client: TestClient) -> None:
    statement = client.get("/fhir/metadata").json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert len(resources) >= 140
    patient_params = {p["name"] for p in resources["Patient"]["searchParam"]}
    assert {"name", "birthdate", "identifier", "_id", "_lastUpdated"} <= patient_params
    assert any(op["name"] == "everything" for op in resources["Patient"].get("operation", []))


def test_errors_are_operation_outcomes_with_the_right_status(client: TestClient) -> None:
    cases = [
        (client.post("/fhir/Patient", content=b"{not json", headers=FHIR), 400),
        (
            client.post(
                "/fhir/Patient", content=orjson.dumps({"resourceType": "Observation"}), headers=FHIR
            ),
            400,
        ),
        (
            client.post(
                "/fhir/Patient", content=orjson.dumps({**patient(), "shoeSize": 42}), headers=FHIR
            ),
            400,
        ),
        (
            client.post(
                "/fhir/Patient",
                content=orjson.dumps({**patient(), "birthDate": "1974-13-45"}),
                headers=FHIR,
            ),
            400,
        ),
        (
            client.post(
                "/fhir/Patient",
                content=orjson.dumps({**patient(), "gender": "bogus"}),
                headers=FHIR,
            ),
            400,
        ),
        (client.put("/fhir/Patient", content=orjson.dumps(patient()), headers=FHIR), 405),
        (client.get("/fhir/Patient/x/_history/1"), 404),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        assert response.json()["resourceType"] == "OperationOutcome"
        assert response.json()["issue"][0]["diagnostics"]


def test_body_size_limit(client: TestClient) -> None:
    client.app.state.hub.settings.max_body_bytes = 1000  # type: ignore[attr-defined]
    big = orjson.dumps(
        {**patient(), "text": {"status": "generated", "div": "<div>" + "x" * 5000 + "</div>"}}
    )
    response = client.post("/fhir/Patient", content=big, headers=FHIR)
    assert response.status_code == 413


def test_server_ids_are_time_ordered_uuids(client: TestClient) -> None:
    """Server-assigned ids are UUID version 7: a later create gets a larger id (its rows go
    to the end of the indexes keyed by id, not to a random page of each)."""
    ids = []
    for _ in range(3):
        created = client.post("/fhir/Patient", content=orjson.dumps(patient()), headers=FHIR)
        ids.append(created.json()["id"])
        time.sleep(0.002)
    parsed = [uuid.UUID(i) for i in ids]
    assert [p.version for p in parsed] == [7, 7, 7]
    assert [str(p) for p in parsed] == ids  # the canonical form: lowercase, 8-4-4-4-12
    assert all(p.variant == uuid.RFC_4122 for p in parsed)
    assert ids == sorted(ids) and len(set(ids)) == 3
    # The first 48 bits are the creation time in Unix milliseconds.
    assert abs((parsed[0].int >> 80) - time.time() * 1000) < 60_000
