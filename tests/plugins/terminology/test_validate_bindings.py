"""``$validate`` reports codes outside extensible and preferred bindings as warnings, asked of
the terminology through the ``validate_bound_codes`` hook; required bindings stay errors, and
a write is never refused (nor slowed) for an extensible or preferred binding."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhirhub.plugins.terminology import bindings
from tests.plugins.terminology.conftest import as_caller

pytestmark = pytest.mark.xdist_group("terminology")

A = as_caller(None, "clinician-a")  # type: ignore[arg-type]
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
CATEGORY_VS = "http://hl7.org/fhir/ValueSet/condition-category"
ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"


def condition(category: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": ICD, "code": "E11.9"}]},
        "category": [{"coding": [category]}],
        **more,
    }


def observation(**more: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Glucose"},
        **more,
    }


def validate(client: TestClient, resource: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post(f"/fhir/{resource['resourceType']}/$validate", json=resource, headers=A)
    assert response.status_code == 200, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    return [i for i in outcome["issue"] if i["severity"] != "information"]


def test_a_code_outside_an_extensible_binding_is_a_warning(client: TestClient) -> None:
    issues = validate(client, condition({"system": ICD, "code": "E11.9"}))
    assert len(issues) == 1, issues
    issue = issues[0]
    assert (issue["severity"], issue["code"]) == ("warning", "code-invalid")
    assert issue["expression"] == ["Condition.category[0].coding[0]"]
    assert CATEGORY_VS in issue["diagnostics"] and "extensible" in issue["diagnostics"]


def test_a_code_inside_the_binding_gives_no_issue(client: TestClient) -> None:
    assert validate(client, condition({"system": CATEGORY, "code": "problem-list-item"})) == []
    ok = observation(dataAbsentReason={"coding": [{"system": ABSENT, "code": "unknown"}]})
    assert validate(client, ok) == []


def test_backbone_and_preferred_bindings_and_unknown_codes(client: TestClient) -> None:
    resource = observation(
        category=[{"coding": [{"system": CATEGORY, "code": "problem-list-item"}]}],
        component=[
            {
                "code": {"text": "part"},
                "dataAbsentReason": {"coding": [{"system": ABSENT, "code": "no-such-reason"}]},
            }
        ],
    )
    issues = validate(client, resource)
    assert {(i["severity"], i["expression"][0]) for i in issues} == {
        ("warning", "Observation.category[0].coding[0]"),
        ("warning", "Observation.component[0].dataAbsentReason.coding[0]"),
    }
    assert any("preferred" in i["diagnostics"] for i in issues)


def test_a_system_the_terminology_has_not_loaded_is_not_judged(client: TestClient) -> None:
    snomed = {"system": "http://snomed.info/sct", "code": "55607006"}
    assert validate(client, condition(snomed)) == []


def test_a_wrong_code_in_a_required_binding_stays_an_error(client: TestClient) -> None:
    clinical = {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "x"}
        ]
    }
    resource = condition({"system": CATEGORY, "code": "problem-list-item"}, clinicalStatus=clinical)
    issues = validate(client, resource)
    assert [i["severity"] for i in issues] == ["error"], issues
    assert "condition-clinical" in issues[0]["diagnostics"]


def test_the_write_is_not_refused_and_does_not_pay_for_the_check(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    checked = bindings.codes_outside
    monkeypatch.setattr(bindings, "codes_outside", lambda *args: calls.append(1) or checked(*args))
    patient = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=A)
    resource = condition({"system": ICD, "code": "E11.9"})
    resource["subject"] = {"reference": f"Patient/{patient.json()['id']}"}
    created = client.post("/fhir/Condition", json=resource, headers=A)
    assert created.status_code == 201, created.text
    assert calls == [], "a write must not ask for extensible/preferred bindings"
    # The stored resource, validated at instance level (no body), and as a Parameters.
    url = f"/fhir/Condition/{created.json()['id']}/$validate"
    stored = client.get(url, headers=A).json()
    assert [i["severity"] for i in stored["issue"]] == ["warning"]
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": resource}],
    }
    posted = client.post("/fhir/Condition/$validate", json=parameters, headers=A).json()
    assert [i["severity"] for i in posted["issue"]] == ["warning"]
    assert len(calls) == 2


def test_bad_requests_are_refused_plainly(client: TestClient) -> None:
    response = client.post("/fhir/Condition/$validate?mode=replace", json={}, headers=A)
    assert response.status_code == 400 and "mode" in response.text
    response = client.get("/fhir/Condition/$validate", headers=A)
    assert response.status_code == 400 and "needs the resource" in response.text
    other = client.post("/fhir/Condition/$validate", json=observation(), headers=A).json()
    assert other["issue"][0]["severity"] == "error"
