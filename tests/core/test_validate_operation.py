"""``[type]/$validate`` without a terminology plugin: structure and required bindings are
checked (errors), extensible and preferred bindings are said to be unchecked, and the answer
is 200 with an OperationOutcome whether or not the resource is valid."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from fhirhub.core.hub import build_hub
from tests.conftest import make_settings

CATEGORY = {
    "coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}]
}  # outside the extensible condition-category binding


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from fhirhub.core.http.app import create_app

    tmp_path = tmp_path_factory.mktemp("validate")
    settings = make_settings(
        f"sqlite:///{tmp_path / 'hub.db'}", tmp_path, listeners=False, plugins="-terminology"
    )
    hub = build_hub(settings)
    with TestClient(create_app(hub=hub), base_url="http://testserver") as test_client:
        yield test_client
    hub.close()


def test_without_a_terminology_the_bindings_are_said_to_be_unchecked(client: TestClient) -> None:
    condition = {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/x"},
        "category": [CATEGORY],
    }
    outcome = client.post("/fhir/Condition/$validate", json=condition).json()
    assert [(i["severity"], i["code"]) for i in outcome["issue"]] == [
        ("information", "not-supported")
    ]
    plain = {"resourceType": "Condition", "subject": {"reference": "Patient/x"}}
    outcome = client.post("/fhir/Condition/$validate", json=plain).json()
    assert outcome["issue"] == [
        {"severity": "information", "code": "informational", "diagnostics": "No issues found"}
    ]


def test_structure_and_required_bindings_are_errors_with_status_200(client: TestClient) -> None:
    bad = {"resourceType": "Condition", "clinicalStatus": {"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "x"}]},
        "onsetDateTime": "yesterday"}  # fmt: skip
    response = client.post("/fhir/Condition/$validate", json=bad)
    assert response.status_code == 200
    issues = response.json()["issue"]
    assert {i["severity"] for i in issues} == {"error"}
    text = " ".join(i["diagnostics"] for i in issues)
    assert "subject" in text and "condition-clinical" in text and "yesterday" in text


def test_instance_level_validates_the_stored_resource_and_delete_mode(client: TestClient) -> None:
    patient = client.post("/fhir/Patient", json={"resourceType": "Patient"}).json()
    url = f"/fhir/Patient/{patient['id']}/$validate"
    assert client.get(url).json()["issue"][0]["diagnostics"] == "No issues found"
    assert client.get(f"{url}?mode=delete").status_code == 200
    assert client.get("/fhir/Patient/nope/$validate").status_code == 404
    wrong_id = client.post(url, json={"resourceType": "Patient", "id": "other"}).json()
    assert wrong_id["issue"][0]["severity"] == "error"
    profiled = client.post(
        "/fhir/Patient/$validate?profile=http://example.org/StructureDefinition/p",
        json={"resourceType": "Patient"},
    ).json()
    assert profiled["issue"][0]["severity"] == "warning"


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": ["Condition"], "category": [{"coding": [{"system": "s", "code": "c"}]}]},
        {"resourceType": "Condition", "contained": [{"resourceType": {"x": 1}}]},
        {"resourceType": "Parameters", "parameter": "resource"},
        {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": 3}]},
        {"resourceType": "Condition", "category": "not a list", "code": {"coding": [7]}},
    ],
)
def test_malformed_bodies_get_an_outcome_not_a_server_error(
    client: TestClient, body: dict[str, object]
) -> None:
    response = client.post("/fhir/Condition/$validate", json=body)
    assert response.status_code in (200, 400), response.text
    assert response.json()["resourceType"] == "OperationOutcome"
