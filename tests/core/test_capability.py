"""The CapabilityStatement is valid FHIR and follows what is registered."""

from __future__ import annotations

from fastapi.testclient import TestClient
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from fhirhub.core.operations import Operation


def test_capability_statement_validates_as_fhir(client: TestClient) -> None:
    body = client.get("/fhir/metadata").json()
    model = CapabilityStatement.model_validate(body)
    assert model.fhirVersion == "4.0.1"
    system_ops = {op["name"] for op in body["rest"][0].get("operation", [])}
    assert "reindex" in system_ops


def test_operations_registered_at_run_time_appear(client: TestClient) -> None:
    hub = client.app.state.hub  # type: ignore[attr-defined]
    hub.operations.add(Operation("ping", lambda call: {"resourceType": "Parameters"}, system=True))
    body = client.get("/fhir/metadata").json()
    assert "ping" in {op["name"] for op in body["rest"][0]["operation"]}
    assert client.get("/fhir/$ping").json() == {"resourceType": "Parameters"}
    unknown = client.get("/fhir/$nothing")
    assert unknown.status_code == 404 and unknown.json()["resourceType"] == "OperationOutcome"
