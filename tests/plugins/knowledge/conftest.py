"""A hub with the knowledge plugin, two tenants and a test authenticator (``X-Test-Caller``),
its graph loaded from a slice of the shipped sources (the interactions, the curated label
extracts and PharmacotherapyDB's hypertension and asthma rows) so each test stays quick."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub, build_hub
from fhirhub.plugins.knowledge.loader import load_source
from fhirhub.plugins.knowledge.model import Edge
from fhirhub.plugins.knowledge.sources import BUILTIN, SourceInfo
from fhirhub.sdk import SYSTEM, Access, acting_as, hookimpl, parse_scopes
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
    # An app that may write orders but read nothing else: still checked.
    "orders-a": Access(
        "user:orders-a",
        tenant="org-a",
        roles=frozenset({"clinician"}),
        scopes=parse_scopes("user/MedicationRequest.cru user/Patient.r"),
    ),
}


class HeaderAuthenticator:
    @hookimpl
    def authenticate_request(self, request: Any, hub: Hub) -> Access | None:
        name = request.headers.get("x-test-caller")
        return CALLERS.get(name) if name else None


class Slice:
    """Part of the shipped sources, under the test's own source name."""

    info = SourceInfo("test-slice", "test slice", "1", "CC0-1.0", "https://example.org/cc0")

    def edges(self) -> Iterator[tuple[str, Edge]]:
        for name in ("interactions", "labels"):
            yield from BUILTIN[name].edges()
        for key, edge in BUILTIN["pharmacotherapydb"].edges():
            if edge.target.label in ("hypertension", "asthma"):
                yield key, edge


def build(sqlite_url: str, tmp_path: Path) -> Hub:
    settings = make_settings(sqlite_url, tmp_path, auth="on", listeners=False, plugins="")
    hub = build_hub(settings, extra_plugins=[HeaderAuthenticator()])
    add_tenants(hub, "org-a", "org-b")
    with acting_as(SYSTEM):
        load_source(hub, Slice())
    return hub


@pytest.fixture
def hub(sqlite_url: str, tmp_path: Path) -> Iterator[Hub]:
    hub = build(sqlite_url, tmp_path)
    yield hub
    hub.close()


@pytest.fixture
def client(hub: Hub) -> Iterator[TestClient]:
    from fhirhub.core.http.app import create_app

    with TestClient(create_app(hub=hub), base_url="http://testserver") as test_client:
        hub.dispatcher.wait_idle()
        yield test_client


def as_(caller: str) -> dict[str, str]:
    return {"X-Test-Caller": caller}


RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


def post(client: TestClient, caller: str, resource: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=as_(caller))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def patient(client: TestClient, caller: str) -> str:
    return (
        "Patient/"
        + post(client, caller, {"resourceType": "Patient", "name": [{"family": "K"}]})["id"]
    )


def condition(
    client: TestClient, caller: str, subject: str, code: str, text: str
) -> dict[str, Any]:
    return post(
        client,
        caller,
        {
            "resourceType": "Condition",
            "subject": {"reference": subject},
            "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
            "code": {"coding": [{"system": SNOMED, "code": code, "display": text}]},
        },
    )


def order(subject: str, text: str, code: str = "", **extra: Any) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": text}
    if code:
        concept["coding"] = [{"system": RXNORM, "code": code, "display": text}]
    return {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": subject},
        "medicationCodeableConcept": concept,
        **extra,
    }
