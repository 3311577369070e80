"""Tenant-owned terminology: a tenant's own CodeSystems and ValueSets, written by its callers,
are labelled with the tenant and seen by it alone; the shared ones (unlabelled: the R4
definitions, an administrator's) by every tenant. Two tenants with code systems of one url."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub
from fhirhub.sdk import TENANT_SYSTEM
from tests.plugins.terminology.conftest import as_caller, parameter

pytestmark = pytest.mark.xdist_group("terminology")

A = as_caller(None, "clinician-a")  # type: ignore[arg-type]
B = as_caller(None, "clinician-b")  # type: ignore[arg-type]
ADMIN = as_caller(None, "admin")  # type: ignore[arg-type]

LOCAL = "http://example.org/fhir/CodeSystem/local-units"
SHARED_URL = "http://example.org/fhir/CodeSystem/shared-units"


def _code_system(url: str, *concepts: tuple[str, str]) -> dict[str, Any]:
    return {
        "resourceType": "CodeSystem",
        "url": url,
        "version": "1",
        "status": "active",
        "content": "complete",
        "concept": [{"code": code, "display": display} for code, display in concepts],
    }


def _lookup(client: TestClient, who: dict[str, str], url: str, code: str) -> Any:
    response = client.get(f"/fhir/CodeSystem/$lookup?system={url}&code={code}", headers=who)
    if response.status_code != 200:
        return response.status_code
    return parameter(response.json(), "display")


@pytest.fixture(scope="module")
def written(client: TestClient, hub: Hub) -> dict[str, str]:
    ids: dict[str, str] = {}
    for name, who, resource in (
        ("a", A, _code_system(LOCAL, ("icu", "Intensive care unit"), ("hdu", "High dependency"))),
        ("b", B, _code_system(LOCAL, ("w7", "Ward seven"))),
        ("shared", ADMIN, _code_system(SHARED_URL, ("er", "Emergency room"))),
        ("a-override", A, _code_system(SHARED_URL, ("er", "Urgences (org-a)"))),
    ):
        response = client.post("/fhir/CodeSystem", json=resource, headers=who)
        assert response.status_code == 201, response.text
        ids[name] = response.json()["id"]
    value_set = {
        "resourceType": "ValueSet",
        "url": "http://example.org/fhir/ValueSet/a-units",
        "status": "active",
        "compose": {"include": [{"system": LOCAL}]},
    }
    response = client.post("/fhir/ValueSet", json=value_set, headers=A)
    assert response.status_code == 201, response.text
    ids["a-value-set"] = response.json()["id"]
    assert hub.dispatcher is not None
    hub.dispatcher.wait_idle()
    return ids


def test_a_tenants_code_system_is_labelled_and_read_by_that_tenant_alone(
    client: TestClient, written: dict[str, str]
) -> None:
    own = client.get(f"/fhir/CodeSystem/{written['a']}", headers=A).json()
    assert {"system": TENANT_SYSTEM, "code": "org-a"} in own["meta"]["security"]
    assert client.get(f"/fhir/CodeSystem/{written['a']}", headers=B).status_code == 404
    found = client.get(f"/fhir/CodeSystem?url={LOCAL}", headers=B).json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [written["b"]]
    # The shared one is everybody's.
    assert client.get(f"/fhir/CodeSystem/{written['shared']}", headers=B).status_code == 200


def test_operations_answer_from_the_callers_own_codes_then_the_shared_ones(
    client: TestClient, written: dict[str, str]
) -> None:
    assert _lookup(client, A, LOCAL, "icu") == "Intensive care unit"
    assert _lookup(client, B, LOCAL, "icu") == 404  # B's system of that url has no icu
    assert _lookup(client, B, LOCAL, "w7") == "Ward seven"
    assert _lookup(client, A, LOCAL, "w7") == 404
    # An administrator (no tenant) and the system see the shared code systems only.
    assert _lookup(client, ADMIN, LOCAL, "icu") == 404
    # A tenant's own version of a shared url stands for it in that tenant only.
    assert _lookup(client, A, SHARED_URL, "er") == "Urgences (org-a)"
    assert _lookup(client, B, SHARED_URL, "er") == "Emergency room"
    # The R4 definitions are shared by both.
    clinical = "http://terminology.hl7.org/CodeSystem/condition-clinical"
    assert _lookup(client, A, clinical, "active") == "Active"
    assert _lookup(client, B, clinical, "active") == "Active"


def test_a_tenants_value_set_expands_for_it_alone(
    client: TestClient, written: dict[str, str]
) -> None:
    url = "http://example.org/fhir/ValueSet/a-units"
    response = client.get(f"/fhir/ValueSet/$expand?url={url}", headers=A)
    assert response.status_code == 200, response.text
    assert sorted(c["code"] for c in response.json()["expansion"]["contains"]) == ["hdu", "icu"]
    assert client.get(f"/fhir/ValueSet/$expand?url={url}", headers=B).status_code == 404
    implicit = client.get(f"/fhir/ValueSet/$expand?url={LOCAL}?fhir_vs", headers=B).json()
    assert [c["code"] for c in implicit["expansion"]["contains"]] == ["w7"]
    # Search by the tenant's value set: its own Conditions for A, unknown to B.
    condition = {
        "resourceType": "Condition",
        "subject": {"display": "a patient"},
        "code": {"coding": [{"system": LOCAL, "code": "icu"}]},
    }
    assert client.post("/fhir/Condition", json=condition, headers=A).status_code == 201
    found = client.get(f"/fhir/Condition?code:in={url}", headers=A).json()
    assert [e["resource"]["code"]["coding"][0]["code"] for e in found["entry"]] == ["icu"]
    assert client.get(f"/fhir/Condition?code:in={url}", headers=B).status_code == 404


def test_a_tenant_changes_only_its_own_terminology(
    client: TestClient, hub: Hub, written: dict[str, str]
) -> None:
    mine = _code_system(LOCAL, ("icu", "Intensive care"), ("hdu", "High dependency"))
    mine["id"] = written["a"]
    assert client.put(f"/fhir/CodeSystem/{written['a']}", json=mine, headers=A).status_code == 200
    # B neither sees A's nor may write the shared one, nor any other shared definition.
    other = {**mine, "id": written["a"]}
    assert client.put(f"/fhir/CodeSystem/{written['a']}", json=other, headers=B).status_code == 405
    shared = {**_code_system(SHARED_URL, ("er", "Taken")), "id": written["shared"]}
    response = client.put(f"/fhir/CodeSystem/{written['shared']}", json=shared, headers=B)
    assert response.status_code == 403
    assert client.delete(f"/fhir/CodeSystem/{written['shared']}", headers=B).status_code == 404
    assert client.delete(f"/fhir/CodeSystem/{written['a']}", headers=B).status_code == 404
    structure = {
        "resourceType": "SearchParameter",
        "url": "http://example.org/fhir/SearchParameter/x",
        "name": "x",
        "status": "draft",
        "description": "x",
        "code": "x",
        "base": ["Patient"],
        "type": "token",
        "expression": "Patient.gender",
    }
    assert client.post("/fhir/SearchParameter", json=structure, headers=B).status_code == 403
    assert hub.dispatcher is not None
    hub.dispatcher.wait_idle()
    assert _lookup(client, A, LOCAL, "icu") == "Intensive care"
    assert _lookup(client, B, SHARED_URL, "er") == "Emergency room"
    # A deletes its own: its code system is gone for it, B's stays.
    assert client.delete(f"/fhir/CodeSystem/{written['a']}", headers=A).status_code == 204
    hub.dispatcher.wait_idle()
    assert _lookup(client, A, LOCAL, "icu") == 404
    assert _lookup(client, B, LOCAL, "w7") == "Ward seven"
