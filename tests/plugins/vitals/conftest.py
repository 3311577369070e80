"""A hub with the vitals plugin, a test authenticator (``X-Test-Caller``) and two tenants;
helpers to write a set of vital signs the way a bedside device or form does."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub, build_hub
from fhirhub.sdk import Access, hookimpl, parse_scopes
from tests.conftest import make_settings
from tests.tenants import add_tenants

CALLERS: dict[str, Access] = {
    "nurse-a": Access(
        "user:nurse-a",
        tenant="org-a",
        roles=frozenset({"clinician"}),
        scopes=parse_scopes("user/*.cruds"),
    ),
    "nurse-b": Access(
        "user:nurse-b",
        tenant="org-b",
        roles=frozenset({"clinician"}),
        scopes=parse_scopes("user/*.cruds"),
    ),
    # A clinician of a single-hospital hub (no tenant): sees what untenanted feeds write.
    "charge-nurse": Access(
        "user:charge-nurse",
        roles=frozenset({"clinician"}),
        scopes=parse_scopes("user/*.cruds"),
    ),
    "reader-a": Access(
        "user:read-a",
        tenant="org-a",
        roles=frozenset({"clinician"}),
        scopes=parse_scopes("user/*.rs"),
    ),
}


class HeaderAuthenticator:
    @hookimpl
    def authenticate_request(self, request: Any, hub: Hub) -> Access | None:
        if patient := request.headers.get("x-test-patient"):
            return Access(
                "user:pat",
                tenant="org-a",
                roles=frozenset({"patient"}),
                scopes=parse_scopes("patient/*.rs"),
                patient=patient,
            )
        name = request.headers.get("x-test-caller")
        return CALLERS.get(name) if name else None


def vitals_settings() -> dict[str, Any]:
    return {}


@pytest.fixture
def hub(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    # Escalation every step at once (0 minutes) so tests can run the schedule by hand.
    monkeypatch.setenv("FHIRHUB_VITALS_ESCALATION_MINUTES", "[0, 0]")
    monkeypatch.setenv("FHIRHUB_VITALS_ESCALATION_CHECK_SECONDS", "3600")
    settings = make_settings(sqlite_url, tmp_path, auth="on", listeners=False, plugins="-mpi")
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


def settle(hub: Hub) -> None:
    assert hub.dispatcher is not None
    assert hub.dispatcher.wait_idle(timeout=60)


def now_text() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def quantity_obs(patient: str, code: str, value: float, unit: str, when: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


ACVPU_CODES = {
    "A": "248234008",
    "C": "130987000",
    "V": "300202002",
    "P": "450847001",
    "U": "422768004",
}


def vitals_bundle(
    patient: str,
    *,
    rr: float | None = None,
    spo2: float | None = None,
    o2_flow: float | None = None,
    sbp: float | None = None,
    pulse: float | None = None,
    acvpu: str | None = None,
    temp: float | None = None,
    temp_unit: str = "Cel",
    when: str | None = None,
) -> dict[str, Any]:
    when = when or now_text()
    entries = []
    for code, value, unit in (
        ("9279-1", rr, "/min"),
        ("59408-5", spo2, "%"),
        ("3151-8", o2_flow, "L/min"),
        ("8480-6", sbp, "mm[Hg]"),
        ("8867-4", pulse, "/min"),
        ("8310-5", temp, temp_unit),
    ):
        if value is not None:
            entries.append(quantity_obs(patient, code, value, unit, when))
    if acvpu is not None:
        obs = quantity_obs(patient, "67775-7", 0, "", when)
        del obs["valueQuantity"]
        obs["category"][0]["coding"][0]["code"] = "exam"
        obs["valueCodeableConcept"] = {
            "coding": [{"system": "http://snomed.info/sct", "code": ACVPU_CODES[acvpu]}]
        }
        entries.append(obs)
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": e, "request": {"method": "POST", "url": "Observation"}} for e in entries
        ],
    }


def new_patient(client: TestClient, caller: str, name: str = "Ward Patient") -> str:
    given, family = name.split(" ", 1)
    response = client.post(
        "/fhir/Patient",
        headers=as_(caller),
        json={"resourceType": "Patient", "name": [{"given": [given], "family": family}]},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def post_vitals(client: TestClient, caller: str, bundle: dict[str, Any]) -> Any:
    return client.post("/fhir", headers=as_(caller), json=bundle)
