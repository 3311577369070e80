"""A third-party plugin written from docs/plugins.md alone, using only ``fhirhub.sdk``: a lab
feed for two hospitals that upserts patients by identifier in one conditional transaction per
result, acting as the system for the sending hospital, and listens to committed versions.

It does what the HL7 adapter does, through the same door, and proves the door keeps tenants
apart: the same MRN from two hospitals is two patients, and every event names its tenant.
"""

from __future__ import annotations

import ast
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, Request

from fhirhub.sdk import (
    Hub,
    StoredVersion,
    acting_as,
    hookimpl,
    invalid,
    system_for,
    tenant_of,
    transaction,
)
from tests.tenants import add_tenants

#: Which hospital (tenant) each sending facility belongs to: the plugin's own configuration.
FACILITIES = {"NORTH-LAB": "org-north", "SOUTH-LAB": "org-south"}
MRN = "urn:oid:2.16.840.1.113883.19.5"


def result_bundle(message: dict[str, Any]) -> dict[str, Any]:
    """One lab result as a transaction: the patient upserted by MRN, the observation created."""
    patient_url = "urn:uuid:" + message["mrn"].lower().replace(" ", "-") + "-patient"
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": patient_url,
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": MRN, "value": message["mrn"]}],
                    "name": [{"family": message["family"]}],
                },
                "request": {"method": "PUT", "url": f"Patient?identifier={MRN}|{message['mrn']}"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
                    "subject": {"reference": patient_url},
                    "valueQuantity": {"value": message["potassium"], "unit": "mmol/L"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }


class LabFeed:
    PLUGIN_NAME = "lab-feed"

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str | None]] = []
        self.lock = threading.Lock()

    @hookimpl
    def register_routes(self, hub: Hub) -> APIRouter:
        router = APIRouter()

        @router.post("/results")
        async def results(request: Request) -> dict[str, Any]:
            message = await request.json()
            tenant = FACILITIES.get(message.get("facility", ""))
            if tenant is None:
                raise invalid(f"Unknown sending facility {message.get('facility')!r}")
            with acting_as(system_for(tenant)), transaction(hub) as tx:
                return tx.bundle(result_bundle(message))

        return router

    @hookimpl
    def resource_committed(self, event: StoredVersion, hub: Hub) -> None:
        with self.lock:
            self.events.append((event.resource_type, event.resource_id, event.tenant))


@pytest.fixture
def feed() -> LabFeed:
    return LabFeed()


@pytest.fixture
def fhirhub_plugins(feed: LabFeed) -> list[Any]:
    return [feed]


def test_the_plugin_imports_nothing_of_fhirhub_but_the_sdk() -> None:
    tree = ast.parse(Path(__file__).read_text())
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fhirhub")
    }
    assert imported == {"fhirhub.sdk"}


def test_a_conditional_transaction_per_tenant_with_events_naming_the_tenant(
    fhirhub_hub: Hub, fhirhub_client: Any, feed: LabFeed
) -> None:
    add_tenants(fhirhub_hub, "org-north", "org-south")
    post = fhirhub_client.post
    sent = [
        {"facility": "NORTH-LAB", "mrn": "M1", "family": "Ng", "potassium": 4.1},
        {"facility": "NORTH-LAB", "mrn": "M1", "family": "Ng", "potassium": 5.9},
        {"facility": "SOUTH-LAB", "mrn": "M1", "family": "Okafor", "potassium": 3.2},
    ]
    responses = [post("/plugins/lab-feed/results", json=message) for message in sent]
    assert [r.status_code for r in responses] == [200, 200, 200], [r.text for r in responses]
    patients = [r.json()["entry"][0]["response"]["location"].split("/")[1] for r in responses]
    # The same MRN: one patient per hospital, never matched across hospitals.
    assert patients[0] == patients[1] != patients[2]
    assert fhirhub_hub.dispatcher is not None and fhirhub_hub.dispatcher.wait_idle(timeout=20)
    written = [e for e in feed.events if e[0] in ("Patient", "Observation")]
    assert {(t, tenant) for t, _, tenant in written} == {
        ("Patient", "org-north"),
        ("Observation", "org-north"),
        ("Patient", "org-south"),
        ("Observation", "org-south"),
    }
    assert sum(1 for t, _, _ in written if t == "Observation") == 3
    north = fhirhub_client.get(f"/fhir/Patient/{patients[0]}").json()
    assert tenant_of(north) == "org-north" and north["meta"]["versionId"] == "1"


def test_an_unknown_facility_is_refused_and_nothing_is_stored(
    fhirhub_hub: Hub, fhirhub_client: Any, feed: LabFeed
) -> None:
    message = {"facility": "NOWHERE", "mrn": "M9", "family": "X", "potassium": 4.0}
    response = fhirhub_client.post("/plugins/lab-feed/results", json=message)
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    assert (
        fhirhub_client.get("/fhir/Patient", params={"identifier": f"{MRN}|M9"}).json().get("total")
        == 0
    )
