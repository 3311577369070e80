"""Writes, history and deletions seen from a tenant and from a patient's chart: no write moves
another patient's resource into one's own chart, history shows each version to the patients
whose compartment it was in, no answer tells whether an id exists where the caller cannot see,
and a patient's own deletions read as deleted. Two tenants, real HTTP, both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.security.rest_world import RestWorld, observation, patient, rest_world


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[RestWorld]:
    with rest_world(database_url, tmp_path) as built:
        yield built


def answer(response: httpx.Response, resource_id: str) -> tuple[int, str]:
    """Status and diagnostics with the id blanked: what tells one id from another."""
    body = response.json()
    text = body["issue"][0]["diagnostics"] if body.get("resourceType") == "OperationOutcome" else ""
    return response.status_code, text.replace(resource_id, "ID")


def history_ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [
        e["fullUrl"].rsplit("/fhir/", 1)[1] + "/" + e["response"]["etag"]
        for e in response.json().get("entry", [])
    ]


# -- 7: a patient-context write may not take over another patient's resource ------------------


def test_patient_context_cannot_move_another_patients_resource_into_its_chart(
    world: RestWorld,
) -> None:
    p1, clinician = world.caller("pat-a1"), world.caller("clin-a")
    hijack = observation("obs-a2", "pa1", value=99)
    taken = p1.put("Observation/obs-a2", json=hijack)
    free = p1.put("Observation/obs-free", json={**hijack, "id": "obs-free"})
    assert taken.status_code == 405, taken.text
    assert answer(taken, "obs-a2") == answer(free, "obs-free")
    # The same inside a transaction.
    for target in ("obs-a2", "obs-free2"):
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": {**hijack, "id": target},
                    "request": {"method": "PUT", "url": f"Observation/{target}"},
                }
            ],
        }
        assert p1.post("", json=bundle).status_code == 405
    original = clinician.get("Observation/obs-a2").json()
    assert original["subject"]["reference"] == "Patient/pa2"
    assert original["meta"]["versionId"] == "1"
    assert clinician.get("Observation/obs-free").status_code == 404
    # Its own resources it still updates, and may not move out of its chart.
    own = p1.put("Observation/obs-a1", json=observation("obs-a1", "pa1", value=2))
    assert own.status_code == 200, own.text
    moved = p1.put("Observation/obs-a1", json=observation("obs-a1", "pa2", value=3))
    assert moved.status_code == 403
    assert (
        p1.patch(
            "Observation/obs-a2",
            json=[{"op": "replace", "path": "/subject/reference", "value": "Patient/pa1"}],
            headers={"Content-Type": "application/json-patch+json"},
        ).status_code
        == 404
    )


def test_history_follows_the_compartment_of_each_version(world: RestWorld) -> None:
    clinician = world.caller("clin-a")
    p1, p2 = world.caller("pat-a1"), world.caller("pat-a2")
    # A clinician corrects a misfiled Observation: obs-a2 moves from pa2's chart to pa1's.
    moved = clinician.put("Observation/obs-a2", json=observation("obs-a2", "pa1", value=5))
    assert moved.status_code == 200, moved.text
    # pa1 sees the version written into its chart, not the one from pa2's.
    assert p1.get("Observation/obs-a2").status_code == 200
    assert history_ids(p1.get("Observation/obs-a2/_history")) == ['Observation/obs-a2/W/"2"']
    assert p1.get("Observation/obs-a2/_history/1").status_code == 404
    assert p1.get("Observation/obs-a2/_history/2").status_code == 200
    typed = history_ids(p1.get("Observation/_history"))
    assert 'Observation/obs-a2/W/"2"' in typed and 'Observation/obs-a2/W/"1"' not in typed
    system = history_ids(p1.get("_history"))
    assert 'Observation/obs-a2/W/"1"' not in system
    # pa2 keeps the version that was in its chart, and nothing after it.
    assert p2.get("Observation/obs-a2").status_code == 404
    assert p2.get("Observation/obs-a2/_history/1").status_code == 200
    assert p2.get("Observation/obs-a2/_history/2").status_code == 404
    assert history_ids(p2.get("Observation/obs-a2/_history")) == ['Observation/obs-a2/W/"1"']
    typed = history_ids(p2.get("Observation/_history"))
    assert 'Observation/obs-a2/W/"1"' in typed and 'Observation/obs-a2/W/"2"' not in typed
    # A resource never in its chart stays invisible at every level.
    assert p2.get("Observation/obs-a1/_history").status_code == 404
    assert world.caller("clin-b").get("Observation/obs-a2/_history").status_code == 404


# -- 13: no existence oracle across tenants -----------------------------------------------------


def test_put_to_another_tenants_id_answers_like_a_free_id(world: RestWorld) -> None:
    a, b, root = world.caller("clin-a"), world.caller("clin-b"), world.caller("root")
    before = b.get("Patient/pb1").json()
    taken = a.put("Patient/pb1", json=patient("pb1", "Stolen"))
    free = a.put("Patient/free-1", json=patient("free-1", "Stolen"))
    assert taken.status_code == 405, taken.text
    assert answer(taken, "pb1") == answer(free, "free-1")
    # If-Match neither tells the other tenant's version nor that there is one.
    for etag in ('W/"1"', 'W/"9"'):
        headers = {"If-Match": etag}
        matched = a.put("Patient/pb1", json=patient("pb1", "Stolen"), headers=headers)
        unmatched = a.put("Patient/free-1", json=patient("free-1", "Stolen"), headers=headers)
        assert matched.status_code == 412, matched.text
        assert answer(matched, "pb1") == answer(unmatched, "free-1")
    # An id the other tenant deleted answers the same.
    assert b.delete("Observation/obs-b1").status_code in (200, 204)
    deleted = a.put("Observation/obs-b1", json=observation("obs-b1", "pa1"))
    free_obs = a.put("Observation/obs-free", json=observation("obs-free", "pa1"))
    assert answer(deleted, "obs-b1") == answer(free_obs, "obs-free")
    # Conditional update naming an id in its body: no match, so an update as create of it.
    criteria = "Patient?identifier=http://nowhere.example|none"
    cond_taken = a.put(criteria, json=patient("pb1", "Stolen"))
    cond_free = a.put(criteria, json=patient("free-2", "Stolen"))
    assert cond_taken.status_code == 405, cond_taken.text
    assert answer(cond_taken, "pb1") == answer(cond_free, "free-2")
    # Batch and transaction entries.
    for method in ("PUT", "DELETE"):
        responses = []
        for target in ("pb1", "free-3"):
            entry: dict[str, Any] = {"request": {"method": method, "url": f"Patient/{target}"}}
            if method == "PUT":
                entry["resource"] = patient(target, "Stolen")
            batch = a.post("", json={"resourceType": "Bundle", "type": "batch", "entry": [entry]})
            response = batch.json()["entry"][0]["response"]
            outcome = response.get("outcome", {}).get("issue", [{}])[0].get("diagnostics", "")
            responses.append((response["status"], outcome.replace(target, "ID")))
            tx = a.post(
                "", json={"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
            )
            responses.append((str(tx.status_code), ""))
        assert responses[0] == responses[2] and responses[1] == responses[3], (method, responses)
    # Nothing was created or changed.
    assert b.get("Patient/pb1").json() == before
    for free_id in ("free-1", "free-2", "free-3"):
        assert root.get(f"Patient/{free_id}").status_code == 404


def test_callers_who_see_everything_keep_update_as_create(world: RestWorld) -> None:
    root = world.caller("root")
    created = root.put("Patient/new-1", json=patient("new-1", "Root"))
    assert created.status_code == 201, created.text
    # A conditional update that matches nothing but names an existing id is a conflict.
    criteria = "Patient?identifier=http://nowhere.example|none"
    conflict = root.put(criteria, json=patient("pb1", "Other"))
    assert conflict.status_code == 409, conflict.text
    assert root.put(criteria, json=patient("new-2", "Root")).status_code == 201


# -- 23: a patient's own deletions read as deleted ---------------------------------------------


def test_patient_context_gets_410_for_what_it_deleted(world: RestWorld) -> None:
    p1 = world.caller("pat-a1")
    assert p1.delete("Observation/obs-a1").status_code in (200, 204)
    gone = p1.get("Observation/obs-a1")
    assert gone.status_code == 410, gone.text
    assert p1.get("Observation/obs-a1/_history/2").status_code == 410
    assert p1.get("Observation/obs-a1/_history/1").status_code == 200
    assert len(history_ids(p1.get("Observation/obs-a1/_history"))) == 2
    assert p1.delete("Observation/obs-a1").status_code in (200, 204)  # idempotent
    # Others still cannot tell it ever existed.
    for name in ("pat-a2", "clin-b"):
        other = world.caller(name)
        hidden, missing = other.get("Observation/obs-a1"), other.get("Observation/none")
        assert answer(hidden, "obs-a1") == answer(missing, "none")
    # Its own deleted resource it may write again (it sees it).
    again = p1.put("Observation/obs-a1", json=observation("obs-a1", "pa1", value=4))
    assert again.status_code == 201, again.text
