"""Who may optimise, store and approve, with two tenants on both backends.

Callers are :class:`Access` objects chosen by a test authenticator (header ``X-Test-Caller``),
as in tests/core/test_access_isolation.py; the OAuth server that issues real tokens is tested
with the security plugin.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhirhub.core.access import Access, parse_scopes
from fhirhub.core.hookspecs import hookimpl
from fhirhub.core.hub import Hub, build_hub
from fhirhub.sdk import acting_as, process_bundle, system_for, update
from tests.conftest import make_settings
from tests.plugins.diet.helpers import parameters, patient_bundle, value
from tests.tenants import add_tenants

CALLERS: dict[str, Access] = {
    "dietitian-a": Access(
        "user:diet-a",
        tenant="org-a",
        roles=frozenset({"clinician"}),
        scopes=parse_scopes("user/*.cruds"),
        extra={"fhir_user": "Practitioner/pr-a"},
    ),
    "clinician-b": Access(
        "user:clin-b",
        tenant="org-b",
        roles=frozenset({"clinician"}),
        scopes=parse_scopes("user/*.cruds"),
    ),
    "reader-a": Access(
        "user:read-a",
        tenant="org-a",
        roles=frozenset({"clinician"}),
        scopes=parse_scopes("user/*.rs"),
    ),
    "app-a": Access("client:app-a", tenant="org-a", scopes=parse_scopes("system/*.cruds")),
    "patient-a1": Access(
        "user:pat-a1",
        tenant="org-a",
        roles=frozenset({"patient"}),
        scopes=parse_scopes("patient/*.rs"),
        patient="pa1",
    ),
}


class HeaderAuthenticator:
    @hookimpl
    def authenticate_request(self, request: Any, hub: Hub) -> Access | None:
        name = request.headers.get("x-test-caller")
        return CALLERS.get(name) if name else None


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    from fhirhub.core.http.app import create_app

    settings = make_settings(database_url, tmp_path, auth="on", listeners=False)
    hub = build_hub(settings, extra_plugins=[HeaderAuthenticator()])
    add_tenants(hub, "org-a", "org-b")
    # Each hospital's records, with the ids the tests name: written as the system acting for
    # the hospital (a tenant's user may not choose ids, see docs/security.md).
    with acting_as(system_for("org-a")):
        update(
            hub, {"resourceType": "Practitioner", "id": "pr-a", "name": [{"family": "Dietitian"}]}
        )
    for tenant, patients in (("org-a", ("pa1", "pa2")), ("org-b", ("pb1",))):
        with acting_as(system_for(tenant)):
            for patient in patients:
                process_bundle(hub, patient_bundle(patient))
    with TestClient(create_app(hub=hub), base_url="http://testserver") as test_client:
        yield test_client
    hub.close()


def call(client: TestClient, caller: str, url: str, *pairs: tuple[str, Any]) -> Any:
    return client.post(f"/fhir/{url}", json=parameters(*pairs), headers={"X-Test-Caller": caller})


def test_a_clinician_optimises_and_stores_for_its_own_tenant(client: TestClient) -> None:
    response = call(client, "dietitian-a", "Patient/pa1/$diet-optimise")
    assert response.status_code == 200, response.text
    order = value(response.json(), "nutritionOrder")
    assert order["status"] == "draft"
    labels = order["meta"]["security"]
    assert any(label.get("code") == "org-a" for label in labels)


def test_another_tenants_patient_is_not_found(client: TestClient) -> None:
    response = call(client, "clinician-b", "Patient/pa1/$diet-optimise", ("store", False))
    missing = call(client, "clinician-b", "Patient/nobody/$diet-optimise", ("store", False))
    assert response.status_code == missing.status_code == 404
    # Answered exactly like a patient that does not exist.
    assert response.json()["issue"][0]["code"] == missing.json()["issue"][0]["code"]


def test_a_patient_context_token_computes_for_itself_only(client: TestClient) -> None:
    own = call(client, "patient-a1", "Patient/pa1/$diet-optimise", ("store", False))
    assert own.status_code == 200, own.text
    assert value(own.json(), "status") == "optimal"
    assert (
        call(client, "patient-a1", "Patient/pa2/$diet-optimise", ("store", False)).status_code
        == 404
    )
    assert (
        call(client, "patient-a1", "Patient/pb1/$diet-optimise", ("store", False)).status_code
        == 404
    )
    stored = call(client, "patient-a1", "Patient/pa1/$diet-optimise")
    assert stored.status_code == 403


def test_storing_needs_write_scope(client: TestClient) -> None:
    assert call(client, "reader-a", "Patient/pa1/$diet-optimise").status_code == 403
    preview = call(client, "reader-a", "Patient/pa1/$diet-optimise", ("store", False))
    assert preview.status_code == 200
    listed = client.get("/fhir/NutritionOrder", headers={"X-Test-Caller": "dietitian-a"}).json()
    assert listed.get("total", len(listed.get("entry", []))) == 0


def test_approval_needs_a_dietitian_of_the_same_tenant(client: TestClient) -> None:
    order = value(
        call(client, "dietitian-a", "Patient/pa1/$diet-optimise").json(), "nutritionOrder"
    )
    url = f"NutritionOrder/{order['id']}/$diet-approve"
    assert call(client, "clinician-b", url).status_code == 404  # other tenant: not found
    assert call(client, "patient-a1", url).status_code == 403
    assert call(client, "app-a", url).status_code == 403  # write scopes, but no role
    approved = call(client, "dietitian-a", url, ("note", "reviewed with the patient"))
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["status"] == "active"
    assert body["orderer"]["reference"] == "Practitioner/pr-a"
    assert "reviewed with the patient" in body["note"][-1]["text"]
    assert call(client, "dietitian-a", url).status_code == 409  # no longer a draft


def test_activating_by_a_plain_update_needs_the_role_too(client: TestClient) -> None:
    order = value(
        call(client, "dietitian-a", "Patient/pa1/$diet-optimise").json(), "nutritionOrder"
    )
    order["status"] = "active"
    headers = {"X-Test-Caller": "app-a"}
    response = client.put(f"/fhir/NutritionOrder/{order['id']}", json=order, headers=headers)
    assert response.status_code == 403, response.text
    stored = client.get(f"/fhir/NutritionOrder/{order['id']}", headers=headers).json()
    assert stored["status"] == "draft"
