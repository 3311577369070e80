"""The terminology search modifiers and the codes checked on write, with two tenants."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub
from fhirhub.plugins.terminology.service import service_of
from tests.plugins.terminology.conftest import ICD

pytestmark = pytest.mark.xdist_group("terminology")

A = {"X-Test-Caller": "clinician-a"}
B = {"X-Test-Caller": "clinician-b"}
ADMIN = {"X-Test-Caller": "admin"}


def _condition(code: str, system: str = ICD) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "subject": {"display": "a patient"},
        "code": {"coding": [{"system": system, "code": code}]},
    }


@pytest.fixture(scope="module")
def conditions(client: TestClient) -> dict[str, list[str]]:
    written: dict[str, list[str]] = {"a": [], "b": []}
    for who, tenant, codes in (
        (A, "a", ["E11.9", "E11.65", "E10.9", "A00.0", "E11"]),
        (B, "b", ["E11.9", "E11.22", "S52.521A"]),
    ):
        for code in codes:
            response = client.post("/fhir/Condition", json=_condition(code), headers=who)
            assert response.status_code == 201, response.text
            written[tenant].append(code)
    return written


def _codes(client: TestClient, query: str, who: dict[str, str] = A, status: int = 200) -> list[str]:
    response = client.get(f"/fhir/Condition?{query}&_count=100", headers=who)
    assert response.status_code == status, response.text
    if status != 200:
        return [response.json()["issue"][0]["diagnostics"]]
    return sorted(
        e["resource"]["code"]["coding"][0]["code"] for e in response.json().get("entry", [])
    )


def test_below_finds_every_type_2_diabetes_code_of_the_callers_tenant(
    client: TestClient, conditions: dict[str, list[str]]
) -> None:
    assert _codes(client, f"code:below={ICD}|E11") == ["E11", "E11.65", "E11.9"]
    assert _codes(client, f"code:below={ICD}|E11", who=B) == ["E11.22", "E11.9"]
    assert _codes(client, f"code:below={ICD}|E08-E13") == ["E10.9", "E11", "E11.65", "E11.9"]
    assert _codes(client, f"code:below={ICD}|S52", who=B) == ["S52.521A"]
    assert _codes(client, f"code:below={ICD}|S52") == []  # org-a's view holds none


def test_above_and_comma_separated_values(
    client: TestClient, conditions: dict[str, list[str]]
) -> None:
    assert _codes(client, f"code:above={ICD}|E11.65") == ["E11", "E11.65"]
    assert _codes(client, f"code:below={ICD}|E10,{ICD}|A00-B99") == ["A00.0", "E10.9"]


def test_in_and_not_in_a_stored_value_set(
    client: TestClient, hub: Hub, conditions: dict[str, list[str]]
) -> None:
    value_set = {
        "resourceType": "ValueSet",
        "url": "http://example.org/fhir/ValueSet/t2dm-complications",
        "status": "active",
        "compose": {
            "include": [
                {
                    "system": ICD,
                    "filter": [{"property": "concept", "op": "descendent-of", "value": "E11"}],
                }
            ],
            "exclude": [{"system": ICD, "concept": [{"code": "E11.9"}]}],
        },
    }
    assert client.post("/fhir/ValueSet", json=value_set, headers=ADMIN).status_code == 201
    url = value_set["url"]
    assert _codes(client, f"code:in={url}") == ["E11.65"]
    assert _codes(client, f"code:in={url}", who=B) == ["E11.22"]
    assert _codes(client, f"code:not-in={url}") == ["A00.0", "E10.9", "E11", "E11.9"]
    implicit = f"{ICD}?fhir_vs=isa/E10"
    assert _codes(client, f"code:in={implicit}") == ["E10.9"]


def test_terminology_modifier_errors(client: TestClient, conditions: dict[str, list[str]]) -> None:
    [message] = _codes(client, "code:below=http://example.org/none|x", status=404)
    assert "not known" in message
    [message] = _codes(client, "code:below=E11", status=400)
    assert "system|code" in message
    [message] = _codes(client, "code:in=http://example.org/ValueSet/none", status=404)
    assert "not known" in message
    [message] = _codes(client, f"code:below={ICD}|" + "E" * 100, status=400)
    assert "Malformed" in message


@pytest.fixture
def small_expansion(hub: Hub) -> Iterator[None]:
    settings = service_of(hub).settings
    before = settings.max_expansion
    settings.max_expansion = 3
    yield
    settings.max_expansion = before


def test_modifiers_standing_for_more_codes_than_an_expansion_page_are_joined_not_listed(
    client: TestClient, conditions: dict[str, list[str]], small_expansion: None
) -> None:
    # E08-E13 has over a hundred codes below it, the implicit value set of the whole loaded
    # system thousands: far over the three a listed expansion may hold here, and answered.
    assert _codes(client, f"code:below={ICD}|E08-E13") == ["E10.9", "E11", "E11.65", "E11.9"]
    assert _codes(client, f"code:in={ICD}?fhir_vs") == sorted(conditions["a"])
    assert _codes(client, f"code:not-in={ICD}?fhir_vs") == []
    assert _codes(client, f"code:in={ICD}?fhir_vs=isa/E11", who=B) == ["E11.22", "E11.9"]
    # A value set that lists codes of a system that is not loaded is expanded and listed:
    # over the limit, it is refused rather than cut.
    listed = {
        "resourceType": "ValueSet",
        "url": "http://example.org/fhir/ValueSet/listed-and-loaded",
        "status": "active",
        "compose": {
            "include": [
                {"system": ICD, "concept": [{"code": "E11.9"}]},
                {
                    "system": "http://example.org/not-loaded",
                    "concept": [{"code": c} for c in ("a", "b", "c")],
                },
            ]
        },
    }
    assert client.post("/fhir/ValueSet", json=listed, headers=ADMIN).status_code == 201
    [message] = _codes(client, f"code:in={listed['url']}", status=400)
    assert "more than 3" in message


def test_a_below_search_joins_the_closure_table(hub: Hub) -> None:
    from fhirhub.sdk import TokenModifier

    answer = hub.hook.search_token_codes(
        request=TokenModifier("Condition", "code", "below", f"{ICD}|E11"), hub=hub
    )
    assert answer.codes == ()
    [query] = answer.queries
    assert query.system == ICD
    assert "terminology_closure" in str(query.select)


def test_a_strict_system_refuses_unknown_codes_on_write_with_the_element(
    client: TestClient,
) -> None:
    response = client.post("/fhir/Condition", json=_condition("E11.999"), headers=A)
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert "Unknown code 'E11.999'" in issue["diagnostics"]
    assert issue["expression"] == ["Condition.code.coding[0]"]
    # A system that is not loaded is not checked; a loaded non-strict one neither.
    other = _condition("whatever", system="http://example.org/local")
    assert client.post("/fhir/Condition", json=other, headers=A).status_code == 201
    # A coding of the strict system anywhere in the resource is checked, and the system's
    # URL as some other string (a note) is not taken for one.
    nested = {**_condition("E11.9"), "evidence": [{"code": [_condition("E11.998")["code"]]}]}
    response = client.post("/fhir/Condition", json=nested, headers=A)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Condition.evidence[0].code[0].coding[0]"]
    noted = {**other, "note": [{"text": ICD}], "category": [{"text": ICD}]}
    assert client.post("/fhir/Condition", json=noted, headers=A).status_code == 201


def _observation(
    value: float, unit: str, system: str = "http://unitsofmeasure.org"
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "15074-8"}]},
        "valueQuantity": {"value": value, "unit": unit, "system": system, "code": unit},
    }


def test_quantity_search_converts_ucum_units_and_never_across_dimensions(
    client: TestClient,
) -> None:
    for value, unit, who in (
        (6.0, "mmol/L", A),
        (5000.0, "umol/L", A),  # 5.0 mmol/L
        (7200.0, "umol/L", A),  # 7.2 mmol/L
        (120.0, "mg/dL", A),  # glucose in mass units: no UCUM conversion to mmol/L
        (9.0, "mmol/L", B),
    ):
        assert (
            client.post(
                "/fhir/Observation", json=_observation(value, unit), headers=who
            ).status_code
            == 201
        )

    def values(query: str, who: dict[str, str] = A) -> list[tuple[float, str]]:
        response = client.get(f"/fhir/Observation?{query}&_count=100", headers=who)
        assert response.status_code == 200, response.text
        return sorted(
            (e["resource"]["valueQuantity"]["value"], e["resource"]["valueQuantity"]["code"])
            for e in response.json().get("entry", [])
        )

    ucum = "http://unitsofmeasure.org"
    assert values(f"value-quantity=ge5.5|{ucum}|mmol/L") == [(6.0, "mmol/L"), (7200.0, "umol/L")]
    assert values(f"value-quantity=lt5500|{ucum}|umol/L") == [(5000.0, "umol/L")]
    assert values(f"value-quantity=ge5.5|{ucum}|mmol/L", who=B) == [(9.0, "mmol/L")]
    assert values(f"value-quantity=ge1|{ucum}|g/L") == [(120.0, "mg/dL")]  # 1.2 g/L
    assert values(f"value-quantity=5|{ucum}|furlongz") == []  # not UCUM: no conversion
