"""A hub with the MPI and a test authenticator (``X-Test-Caller``), two tenants, and helpers
to write patients as each tenant's clinician and wait for matching to run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub, build_hub
from fhirhub.sdk import Access, hookimpl, parse_scopes
from tests.conftest import make_settings
from tests.tenants import add_tenants

CALLERS: dict[str, Access] = {
    "clinician-a": Access(
        "user:clin-a",
        tenant="org-a",
        roles=frozenset({"clinician"}),
        scopes=parse_scopes("user/*.cruds"),
    ),
    "clinician-b": Access(
        "user:clin-b",
        tenant="org-b",
        roles=frozenset({"clinician"}),
        scopes=parse_scopes("user/*.cruds"),
    ),
    # An interface engine feeding org-a (HL7 over HTTP): the system acting for the tenant.
    "feed-a": Access("system", tenant="org-a"),
    "reader-a": Access(
        "user:read-a",
        tenant="org-a",
        roles=frozenset({"clinician"}),
        scopes=parse_scopes("user/*.rs"),
    ),
}


def patient_caller(patient_id: str) -> Access:
    return Access(
        "user:pat",
        tenant="org-a",
        roles=frozenset({"patient"}),
        scopes=parse_scopes("patient/*.rs"),
        patient=patient_id,
    )


class HeaderAuthenticator:
    """``X-Test-Caller: name`` -> one of :data:`CALLERS`; ``X-Test-Patient: id`` -> a
    patient-facing app's token for that patient of org-a."""

    @hookimpl
    def authenticate_request(self, request: Any, hub: Hub) -> Access | None:
        if patient := request.headers.get("x-test-patient"):
            return patient_caller(patient)
        name = request.headers.get("x-test-caller")
        return CALLERS.get(name) if name else None


@pytest.fixture
def hub(sqlite_url: str, tmp_path: Path) -> Iterator[Hub]:
    settings = make_settings(sqlite_url, tmp_path, auth="on", listeners=False, plugins="")
    hub = build_hub(settings, extra_plugins=[HeaderAuthenticator()])
    add_tenants(hub, "org-a", "org-b")
    yield hub
    hub.close()


@pytest.fixture
def client(hub: Hub) -> Iterator[TestClient]:
    from fhirhub.core.http.app import create_app

    with TestClient(create_app(hub=hub), base_url="http://testserver") as test_client:
        yield test_client


def as_(caller: str) -> dict[str, str]:
    return {"X-Test-Caller": caller, "Content-Type": "application/fhir+json"}


def person(
    given: str,
    family: str,
    birth: str | None,
    *,
    gender: str = "female",
    phone: str | None = None,
    postcode: str | None = None,
    identifier: tuple[str, str] | None = None,
) -> dict[str, Any]:
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "name": [{"family": family, "given": [given]}],
        "gender": gender,
    }
    if birth:
        patient["birthDate"] = birth
    if phone:
        patient["telecom"] = [{"system": "phone", "value": phone}]
    if postcode:
        patient["address"] = [{"line": ["12 Harbour Road"], "postalCode": postcode}]
    if identifier:
        patient["identifier"] = [{"system": identifier[0], "value": identifier[1]}]
    return patient


def write(client: TestClient, caller: str, resource: dict[str, Any]) -> str:
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=as_(caller))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def settle(hub: Hub) -> None:
    """Wait until every consumer (the MPI's matching among them) has caught up."""
    assert hub.dispatcher is not None
    assert hub.dispatcher.wait_idle(timeout=60)
