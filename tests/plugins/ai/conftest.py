"""A hub with the assistant, two tenants and their clinical data, callers chosen by a test
header, and optionally a scripted model server (``model_server.py``).

org-a: Patient pa1 (Alice Alpha; potassium 4.2 and 5.1, weight 70 kg today, metformin active,
warfarin stopped, diabetes active, a discharge note) and Patient pa2 (a potassium of 3.1 and a
note of her own); a guideline DocumentReference with no subject (HTML). org-b: Patient pb1
with a potassium of 6.3 and a secret note.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub, build_hub
from fhirhub.sdk import SYSTEM, Access, acting_as, hookimpl, parse_scopes, transaction, with_tenant
from tests.conftest import make_settings
from tests.plugins.ai.model_server import Script, model_server
from tests.tenants import add_tenants

CALLERS: dict[str, Access] = {
    "clin-a": Access(
        "user:clin-a",
        tenant="org-a",
        roles=frozenset({"clinician"}),
        scopes=parse_scopes("user/*.cruds"),
    ),
    "clin-b": Access(
        "user:clin-b",
        tenant="org-b",
        roles=frozenset({"clinician"}),
        scopes=parse_scopes("user/*.cruds"),
    ),
    "pat-a1": Access(
        "user:pat-a1",
        tenant="org-a",
        roles=frozenset({"patient"}),
        scopes=parse_scopes("patient/*.rs"),
        patient="pa1",
    ),
}


class HeaderCallers:
    @hookimpl
    def authenticate_request(self, request: Any, hub: Hub) -> Access | None:
        name = request.headers.get("x-test-caller")
        return CALLERS.get(name) if name else None


def as_(caller: str) -> dict[str, str]:
    return {"X-Test-Caller": caller}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _obs(
    oid: str, patient: str, code: str, display: str, value: float, unit: str, when: str
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit},
    }


def _note(
    did: str, patient: str | None, title: str, text: str, kind: str = "text/plain"
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": did,
        "status": "current",
        "description": title,
        "content": [{"attachment": {"contentType": kind, "data": _b64(text), "title": title}}],
    }
    if patient:
        doc["subject"] = {"reference": f"Patient/{patient}"}
    return doc


def seed(hub: Hub) -> None:
    add_tenants(hub, "org-a", "org-b")
    today = datetime.now(UTC).strftime("%Y-%m-%dT08:00:00Z")
    rows: list[tuple[str, dict[str, Any]]] = [
        (
            "org-a",
            {
                "resourceType": "Patient",
                "id": "pa1",
                "gender": "female",
                "birthDate": "1961-04-02",
                "name": [{"family": "Alpha", "given": ["Alice"]}],
                "identifier": [{"system": "urn:mrn", "value": "MRN-778899"}],
                "telecom": [{"system": "phone", "value": "555-123-4567"}],
            },
        ),
        (
            "org-a",
            {
                "resourceType": "Patient",
                "id": "pa2",
                "gender": "female",
                "name": [{"family": "Beta", "given": ["Bea"]}],
            },
        ),
        (
            "org-b",
            {
                "resourceType": "Patient",
                "id": "pb1",
                "gender": "male",
                "name": [{"family": "Elsewhere", "given": ["Bob"]}],
            },
        ),
        ("org-a", _obs("k1", "pa1", "2823-3", "Potassium", 4.2, "mmol/L", "2024-01-05T08:00:00Z")),
        ("org-a", _obs("k2", "pa1", "2823-3", "Potassium", 5.1, "mmol/L", "2024-03-09T08:00:00Z")),
        ("org-a", _obs("w1", "pa1", "29463-7", "Body weight", 70, "kg", today)),
        ("org-a", _obs("k3", "pa2", "2823-3", "Potassium", 3.1, "mmol/L", "2024-02-01T08:00:00Z")),
        ("org-b", _obs("kb", "pb1", "2823-3", "Potassium", 6.3, "mmol/L", "2024-03-10T08:00:00Z")),
        (
            "org-a",
            {
                "resourceType": "MedicationRequest",
                "id": "m1",
                "status": "active",
                "intent": "order",
                "medicationCodeableConcept": {"text": "metformin 500 mg tablet"},
                "subject": {"reference": "Patient/pa1"},
                "authoredOn": "2023-06-01",
            },
        ),
        (
            "org-a",
            {
                "resourceType": "MedicationRequest",
                "id": "m2",
                "status": "stopped",
                "intent": "order",
                "medicationCodeableConcept": {"text": "warfarin 5 mg tablet"},
                "subject": {"reference": "Patient/pa1"},
                "authoredOn": "2020-01-01",
            },
        ),
        (
            "org-a",
            {
                "resourceType": "Condition",
                "id": "c1",
                "clinicalStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                            "code": "active",
                        }
                    ]
                },
                "code": {"text": "Diabetes mellitus type 2"},
                "subject": {"reference": "Patient/pa1"},
                "onsetDateTime": "2015-02-01",
            },
        ),
        (
            "org-a",
            _note(
                "n1",
                "pa1",
                "Discharge summary",
                "Admitted with a foot ulcer. Treated with oral antibiotics. Follow up in the "
                "diabetic foot clinic in two weeks.",
            ),
        ),
        ("org-a", _note("n2", "pa2", "Clinic letter", "Bea reports dizziness when standing up.")),
        (
            "org-a",
            _note(
                "g1",
                None,
                "Hyperkalaemia guideline",
                "<html><body><h1>Hyperkalaemia</h1><p>For potassium above 6.0 mmol/L give "
                "calcium gluconate and repeat the ECG.</p></body></html>",
                "text/html",
            ),
        ),
        ("org-b", _note("nb", "pb1", "Secret memo", "Bob takes the zebrafish protocol secretly.")),
    ]
    with acting_as(SYSTEM), transaction(hub) as tx:
        for tenant, resource in rows:
            with_tenant(resource, tenant)
            tx.update(resource)


def build(sqlite_url: str, tmp_path: Path, *extra: object, **ai: Any) -> Hub:
    settings = make_settings(
        sqlite_url, tmp_path, auth="on", listeners=False, plugins="ai", plugin_config={"ai": ai}
    )
    return build_hub(settings, extra_plugins=[HeaderCallers(), *extra])


def settle(hub: Hub) -> None:
    """Wait until the consumers (the retrieval index among them) have caught up."""
    assert hub.dispatcher is not None
    assert hub.dispatcher.wait_idle(timeout=60)


@pytest.fixture
def model() -> Iterator[tuple[str, Script]]:
    with model_server() as served:
        yield served


@pytest.fixture
def offline_client(sqlite_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """The assistant with no model configured (the extractive provider)."""
    from fhirhub.core.http.app import create_app

    hub = build(sqlite_url, tmp_path)
    with TestClient(create_app(hub=hub)) as client:
        seed(hub)
        settle(hub)
        client.hub = hub  # type: ignore[attr-defined]
        yield client
    hub.close()


@pytest.fixture
def model_client(
    sqlite_url: str, tmp_path: Path, model: tuple[str, Script]
) -> Iterator[TestClient]:
    """The assistant talking to the scripted model server (external: not loopback-exempt)."""
    from fhirhub.core.http.app import create_app

    base, _script = model
    hub = build(sqlite_url, tmp_path, base_url=base, model="scripted", external=True)
    with TestClient(create_app(hub=hub)) as client:
        seed(hub)
        settle(hub)
        client.hub = hub  # type: ignore[attr-defined]
        yield client
    hub.close()


@pytest.fixture
def served_hub(sqlite_url: str, tmp_path: Path, model: tuple[str, Script]) -> Iterator[str]:
    """The assistant (with the scripted model) served over real HTTP; yields the base URL."""
    from tests.security.rest_world import served

    base, _script = model
    hub = build(sqlite_url, tmp_path, base_url=base, model="scripted", external=True)
    try:
        with served(hub) as url:
            seed(hub)
            settle(hub)
            yield url
    finally:
        hub.close()
