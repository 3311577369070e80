"""The terminology operations over HTTP, on a subset of ICD-10-CM and the R4 code systems."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub
from fhirhub.sdk import validation_issues
from tests.plugins.terminology.conftest import ICD, as_caller, parameter, properties

pytestmark = pytest.mark.xdist_group("terminology")

CLIN_A = as_caller(None, "clinician-a")  # type: ignore[arg-type]
CLIN_B = as_caller(None, "clinician-b")  # type: ignore[arg-type]
ADMIN = as_caller(None, "admin")  # type: ignore[arg-type]


def _get(client: TestClient, url: str, who: dict[str, str] = CLIN_A, status: int = 200) -> Any:
    response = client.get(url, headers=who)
    assert response.status_code == status, response.text
    return response.json()


def _valid(resource: dict[str, Any]) -> dict[str, Any]:
    errors = [i for i in validation_issues(resource) if i.severity in ("error", "fatal")]
    assert not errors, errors
    return resource


# -- $lookup


def test_lookup_gives_display_parent_children_and_properties(client: TestClient) -> None:
    out = _valid(_get(client, f"/fhir/CodeSystem/$lookup?system={ICD}&code=E11.6"))
    assert (
        parameter(out, "display") == "Type 2 diabetes mellitus with other specified complications"
    )
    assert properties(out, "parent") == ["E11"]
    assert "E11.65" in properties(out, "child") and "E11.69" in properties(out, "child")
    assert properties(out, "kind") == ["subcategory"]
    assert parameter(out, "version").startswith("20")
    only = _get(client, f"/fhir/CodeSystem/$lookup?system={ICD}&code=E11.6&property=parent")
    assert properties(only, "child") == [] and properties(only, "parent") == ["E11"]


def test_lookup_by_coding_in_a_posted_parameters(client: TestClient) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "coding", "valueCoding": {"system": ICD, "code": "A00-B99"}}],
    }
    response = client.post("/fhir/CodeSystem/$lookup", json=body, headers=CLIN_B)
    assert response.status_code == 200, response.text
    out = response.json()
    assert parameter(out, "display").startswith("Certain infectious and parasitic diseases")
    assert properties(out, "notSelectable") == [True]


def test_lookup_of_an_r4_code_system_shipped_with_the_plugin(client: TestClient) -> None:
    out = _get(
        client,
        "/fhir/CodeSystem/$lookup?system=http://hl7.org/fhir/administrative-gender&code=female",
    )
    assert parameter(out, "display") == "Female"


@pytest.mark.parametrize(
    ("query", "status", "text"),
    [
        ("system=http://example.org/unknown&code=x", 404, "not known"),
        (f"system={ICD}&code=E11.999", 404, "not in CodeSystem"),
        (f"system={ICD}&code=E11.9&version=1999", 404, "version 1999 is not loaded"),
        (f"system={ICD}&code=" + "E" * 200, 400, "Malformed code"),
        (f"system={ICD}&code=%20E11", 400, "Malformed code"),
        ("code=E11", 400, "needs system and code"),
    ],
)
def test_lookup_errors_are_operation_outcomes(
    client: TestClient, query: str, status: int, text: str
) -> None:
    out = _get(client, f"/fhir/CodeSystem/$lookup?{query}", status=status)
    assert out["resourceType"] == "OperationOutcome"
    assert text in out["issue"][0]["diagnostics"]


# -- $validate-code


def test_code_system_validate_code(client: TestClient) -> None:
    ok = _get(client, f"/fhir/CodeSystem/$validate-code?url={ICD}&code=E11.9")
    assert parameter(ok, "result") is True
    assert parameter(ok, "display") == "Type 2 diabetes mellitus without complications"
    unknown = _get(client, f"/fhir/CodeSystem/$validate-code?url={ICD}&code=E11.99")
    assert parameter(unknown, "result") is False and "Unknown code" in parameter(unknown, "message")
    wrong = _get(client, f"/fhir/CodeSystem/$validate-code?url={ICD}&code=E11.9&display=Asthma")
    assert parameter(wrong, "result") is False and "Wrong display" in parameter(wrong, "message")
    concept = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "codeableConcept",
                "valueCodeableConcept": {
                    "coding": [{"system": ICD, "code": "nope"}, {"system": ICD, "code": "A00.1"}]
                },
            }
        ],
    }
    response = client.post("/fhir/CodeSystem/$validate-code", json=concept, headers=CLIN_A)
    assert parameter(response.json(), "result") is True


STATUSES = {
    "resourceType": "CodeSystem",
    "url": "http://example.org/fhir/CodeSystem/statuses",
    "version": "1",
    "status": "active",
    "content": "complete",
    "property": [{"code": "status", "type": "code"}, {"code": "inactive", "type": "boolean"}],
    "concept": [
        {"code": "current", "display": "Current ward"},
        {
            "code": "old",
            "display": "Old ward",
            "property": [{"code": "inactive", "valueBoolean": True}],
        },
        {
            "code": "going",
            "display": "Ward being closed",
            "property": [{"code": "status", "valueCode": "deprecated"}],
        },
    ],
}


def _issues(parameters: dict[str, Any]) -> list[tuple[str, str]]:
    for item in parameters.get("parameter", []):
        if item["name"] == "issues":
            return [(i["severity"], i["details"]["text"]) for i in item["resource"]["issue"]]
    return []


@pytest.fixture(scope="module")
def statuses(client: TestClient, hub: Hub) -> str:
    response = client.post("/fhir/CodeSystem", json=STATUSES, headers=ADMIN)
    assert response.status_code == 201, response.text
    value_set = {
        "resourceType": "ValueSet",
        "url": "http://example.org/fhir/ValueSet/statuses",
        "status": "active",
        "compose": {"include": [{"system": STATUSES["url"]}]},
    }
    assert client.post("/fhir/ValueSet", json=value_set, headers=ADMIN).status_code == 201
    assert hub.dispatcher is not None
    hub.dispatcher.wait_idle()
    return str(STATUSES["url"])


@pytest.mark.parametrize("operation", ["CodeSystem", "ValueSet"])
def test_validate_code_warns_of_inactive_and_deprecated_codes(
    client: TestClient, statuses: str, operation: str
) -> None:
    def validate(code: str, display: str | None = None, extra: str = "") -> dict[str, Any]:
        target = (
            f"url={statuses}"
            if operation == "CodeSystem"
            else f"url=http://example.org/fhir/ValueSet/statuses&system={statuses}"
        )
        query = f"{target}&code={code}" + (f"&display={display}" if display else "") + extra
        return _get(client, f"/fhir/{operation}/$validate-code?{query}")

    current = validate("current", "Current ward")
    assert parameter(current, "result") is True
    assert parameter(current, "message") is None and _issues(current) == []
    old = validate("old")
    assert parameter(old, "result") is True and parameter(old, "inactive") is True
    assert "is inactive" in parameter(old, "message")
    assert _issues(old) == [("warning", f"The concept {statuses}#old is inactive")]
    going = validate("going")
    assert parameter(going, "result") is True
    assert _issues(going) == [("warning", f"The concept {statuses}#going is deprecated")]
    # A display that differs only in case is a warning, another display an error unless
    # the caller asks for lenient display validation.
    cased = validate("current", "current WARD")
    assert parameter(cased, "result") is True
    assert [s for s, _ in _issues(cased)] == ["warning"]
    assert "differs in case" in parameter(cased, "message")
    wrong = validate("old", "Surgery")
    assert parameter(wrong, "result") is False and "Wrong display" in parameter(wrong, "message")
    assert parameter(wrong, "display") is None
    assert [s for s, _ in _issues(wrong)] == ["error", "warning"]
    lenient = validate("old", "Surgery", "&lenientDisplayValidation=true")
    assert parameter(lenient, "result") is True and parameter(lenient, "display") == "Old ward"
    assert [s for s, _ in _issues(lenient)] == ["warning", "warning"]


def test_value_set_validate_code_with_an_r4_value_set(client: TestClient) -> None:
    url = "http://hl7.org/fhir/ValueSet/condition-clinical"
    system = "http://terminology.hl7.org/CodeSystem/condition-clinical"
    ok = _get(client, f"/fhir/ValueSet/$validate-code?url={url}&system={system}&code=active")
    assert parameter(ok, "result") is True
    no = _get(client, f"/fhir/ValueSet/$validate-code?url={url}&system={system}&code=unsure")
    assert parameter(no, "result") is False


# -- $subsumes


@pytest.mark.parametrize(
    ("a", "b", "outcome"),
    [
        ("E11", "E11.9", "subsumes"),
        ("E11.9", "E11", "subsumed-by"),
        ("E11.9", "E11.9", "equivalent"),
        ("E11.9", "E10.9", "not-subsumed"),
        ("E00-E89", "E11.65", "subsumes"),  # a chapter, named by its range
        ("E08-E13", "E11.65", "subsumes"),  # a block
        ("A00-B99", "E11", "not-subsumed"),
        ("S52", "S52.521A", "subsumes"),  # a 7th-character extension
        ("S52.521A", "S52.521D", "not-subsumed"),
        ("T36.0", "T36.0X1A", "subsumes"),  # through the placeholder X
        ("A00-B99", "B99.8", "subsumes"),  # B99: a block that is its own category
    ],
)
def test_subsumes(client: TestClient, a: str, b: str, outcome: str) -> None:
    out = _valid(_get(client, f"/fhir/CodeSystem/$subsumes?system={ICD}&codeA={a}&codeB={b}"))
    assert parameter(out, "outcome") == outcome


def test_subsumes_unknown_code_and_mixed_systems(client: TestClient) -> None:
    _get(client, f"/fhir/CodeSystem/$subsumes?system={ICD}&codeA=E11&codeB=ZZZ", status=404)
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "codingA", "valueCoding": {"system": ICD, "code": "E11"}},
            {"name": "codingB", "valueCoding": {"system": "http://loinc.org", "code": "1-8"}},
        ],
    }
    assert client.post("/fhir/CodeSystem/$subsumes", json=body, headers=CLIN_A).status_code == 400


# -- $expand


def _codes(expansion: dict[str, Any]) -> list[str]:
    return [c["code"] for c in expansion["expansion"].get("contains", [])]


def test_expand_typeahead_filter_over_icd(client: TestClient) -> None:
    vs = f"{ICD}?fhir_vs"
    out = _valid(_get(client, f"/fhir/ValueSet/$expand?url={vs}&filter=diab&count=20"))
    codes = _codes(out)
    assert len(codes) == 20 and out["expansion"]["total"] > 100
    assert all("diab" in c["display"].lower() for c in out["expansion"]["contains"])
    two_words = _get(client, f"/fhir/ValueSet/$expand?url={vs}&filter=type%202%20diab%20kidney")
    assert set(_codes(two_words)) >= {"E11.2", "E11.22", "E11.29"}  # E11.21: "nephropathy"
    assert all(code.startswith("E11") for code in _codes(two_words))


def test_expand_pages_with_count_and_offset(client: TestClient) -> None:
    url = f"/fhir/ValueSet/$expand?url={ICD}?fhir_vs=isa/E11&count=10"
    first = _get(client, url + "&offset=0")
    second = _get(client, url + "&offset=10")
    everything = _get(client, f"/fhir/ValueSet/$expand?url={ICD}?fhir_vs=isa/E11")
    total = everything["expansion"]["total"]
    assert first["expansion"]["total"] == second["expansion"]["total"] == total > 20
    assert _codes(first) + _codes(second) == _codes(everything)[:20]
    assert _codes(everything)[0] == "E11"  # is-a includes the code itself
    past = _get(client, url + f"&offset={total}")
    assert "contains" not in past["expansion"]


def test_expand_a_posted_intensional_value_set(client: TestClient) -> None:
    value_set = {
        "resourceType": "ValueSet",
        "url": "http://example.org/fhir/ValueSet/diabetes-no-e11",
        "status": "active",
        "compose": {
            "include": [
                {
                    "system": ICD,
                    "filter": [{"property": "concept", "op": "descendent-of", "value": "E08-E13"}],
                },
                {"system": ICD, "concept": [{"code": "A00.0"}]},
            ],
            "exclude": [
                {"system": ICD, "filter": [{"property": "concept", "op": "is-a", "value": "E11"}]}
            ],
        },
    }
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "valueSet", "resource": value_set}],
    }
    response = client.post("/fhir/ValueSet/$expand", json=body, headers=CLIN_A)
    assert response.status_code == 200, response.text
    codes = _codes(response.json())
    assert "E10.9" in codes and "E13.9" in codes and "A00.0" in codes
    assert not [c for c in codes if c.startswith("E11")] and "E08-E13" not in codes


@pytest.mark.parametrize(
    ("filter_", "expected", "absent"),
    [
        ({"property": "code", "op": "regex", "value": r"E11\.6[0-9]+"}, "E11.65", "E11.9"),
        ({"property": "kind", "op": "=", "value": "block"}, "E08-E13", "E11"),
        ({"property": "concept", "op": "in", "value": "E11.9,E10.9"}, "E10.9", "E11"),
        ({"property": "billable", "op": "exists", "value": "true"}, "E11.9", "E11"),
    ],
)
def test_expand_filter_operators(
    client: TestClient, filter_: dict[str, str], expected: str, absent: str
) -> None:
    value_set = {
        "resourceType": "ValueSet",
        "status": "active",
        "compose": {"include": [{"system": ICD, "filter": [filter_]}]},
    }
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "valueSet", "resource": value_set},
            {"name": "count", "valueInteger": 5000},
        ],
    }
    response = client.post("/fhir/ValueSet/$expand", json=body, headers=CLIN_A)
    assert response.status_code == 200, response.text
    codes = _codes(response.json())
    assert expected in codes and absent not in codes


def test_expand_an_r4_value_set_and_a_display_language(client: TestClient) -> None:
    out = _valid(
        _get(
            client, "/fhir/ValueSet/$expand?url=http://hl7.org/fhir/ValueSet/administrative-gender"
        )
    )
    assert sorted(_codes(out)) == ["female", "male", "other", "unknown"]


@pytest.mark.parametrize(
    ("query", "status", "text"),
    [
        ("url=http://example.org/ValueSet/none", 404, "not known"),
        ("url=http://example.org/cs?fhir_vs", 404, "not known"),
        (f"url={ICD}?fhir_vs&filter=" + "diabetes%20" * 30, 400, "limited"),
        (f"url={ICD}?fhir_vs&count=1000000", 400, "limited"),
        (f"url={ICD}?fhir_vs&count=-1", 400, "negative"),
        (f"url={ICD}?fhir_vs&count=abc", 400, "integer"),
        (f"url={ICD}?fhir_vs", 400, "page it"),
        (f"url={ICD}?fhir_vs=regex/x", 400, "Unsupported implicit"),
        ("", 400, "Give the value set"),
    ],
)
def test_expand_errors(client: TestClient, query: str, status: int, text: str) -> None:
    out = _get(client, f"/fhir/ValueSet/$expand?{query}", status=status)
    assert text in out["issue"][0]["diagnostics"]


# -- CodeSystem resources, $translate, access


CYCLE = {
    "resourceType": "CodeSystem",
    "url": "http://example.org/fhir/CodeSystem/loop",
    "status": "active",
    "content": "complete",
    "concept": [
        {"code": "a", "property": [{"code": "parent", "valueCode": "b"}]},
        {"code": "b", "property": [{"code": "parent", "valueCode": "a"}]},
    ],
}


def test_a_posted_code_system_is_queryable_and_a_cycle_is_refused(
    client: TestClient, hub: Hub
) -> None:
    response = client.post("/fhir/CodeSystem", json=CYCLE, headers=ADMIN)
    assert response.status_code == 400 and "cycle" in response.text
    system = {
        "resourceType": "CodeSystem",
        "url": "http://example.org/fhir/CodeSystem/wards",
        "version": "1",
        "status": "active",
        "content": "complete",
        "concept": [
            {
                "code": "med",
                "display": "Medicine",
                "concept": [{"code": "card", "display": "Cardiology"}],
            },
            {
                "code": "surg",
                "display": "Surgery",
                "designation": [{"language": "fr", "value": "Chirurgie"}],
            },
        ],
    }
    response = client.post("/fhir/CodeSystem", json=system, headers=ADMIN)
    assert response.status_code == 201, response.text
    assert hub.dispatcher is not None
    hub.dispatcher.wait_idle()
    url = "http://example.org/fhir/CodeSystem/wards"
    out = _get(client, f"/fhir/CodeSystem/$subsumes?system={url}&codeA=med&codeB=card", who=CLIN_B)
    assert parameter(out, "outcome") == "subsumes"
    french = _get(client, f"/fhir/ValueSet/$expand?url={url}?fhir_vs&displayLanguage=fr")
    assert {c["code"]: c["display"] for c in french["expansion"]["contains"]}["surg"] == "Chirurgie"
    # A clinician of a tenant may not write shared terminology (its own: test_tenants.py).
    shared_id = response.json()["id"]
    changed = {**system, "id": shared_id, "title": "Taken over"}
    put = client.put(f"/fhir/CodeSystem/{shared_id}", json=changed, headers=CLIN_A)
    assert put.status_code == 403, put.text
    assert client.delete(f"/fhir/CodeSystem/{shared_id}", headers=CLIN_A).status_code == 404


def test_translate_with_a_stored_concept_map(client: TestClient) -> None:
    concept_map = {
        "resourceType": "ConceptMap",
        "url": "http://example.org/fhir/ConceptMap/local-to-icd",
        "status": "active",
        "group": [
            {
                "source": "http://example.org/local-dx",
                "target": ICD,
                "element": [
                    {"code": "DM2", "target": [{"code": "E11.9", "equivalence": "equivalent"}]}
                ],
            }
        ],
    }
    assert client.post("/fhir/ConceptMap", json=concept_map, headers=ADMIN).status_code == 201
    out = _valid(
        _get(client, "/fhir/ConceptMap/$translate?system=http://example.org/local-dx&code=DM2")
    )
    assert parameter(out, "result") is True
    match = parameter(out, "match")
    assert {p["name"]: p for p in match}["concept"]["valueCoding"]["code"] == "E11.9"
    back = _get(client, f"/fhir/ConceptMap/$translate?system={ICD}&code=E11.9&reverse=true")
    assert parameter(back, "result") is True
    none = _get(client, "/fhir/ConceptMap/$translate?system=http://example.org/local-dx&code=XX")
    assert parameter(none, "result") is False


def test_every_authenticated_caller_reads_terminology_and_nobody_else(client: TestClient) -> None:
    url = f"/fhir/CodeSystem/$lookup?system={ICD}&code=E11.9"
    for caller in ("clinician-a", "clinician-b", "patient-app", "admin"):
        assert client.get(url, headers={"X-Test-Caller": caller}).status_code == 200, caller
    assert client.get(url).status_code == 401
    assert client.get(url, headers={"X-Test-Caller": "no-terminology"}).status_code == 403


def test_loading_is_for_hub_administrators_only(
    client: TestClient, hub: Hub, tmp_path: Any
) -> None:
    csv = tmp_path / "icd10cm-2019.csv"
    csv.write_text(
        "CODE,SHORT DESCRIPTION,LONG DESCRIPTION\nE119,T2DM,Type 2 diabetes mellitus (2019 text)\n"
    )
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "source", "valueCode": "icd10cm"},
            {"name": "path", "valueString": str(csv)},
            {"name": "version", "valueString": "2019"},
        ],
    }
    for caller in ("clinician-a", "org-admin-a"):
        response = client.post(
            "/fhir/CodeSystem/$load", json=body, headers={"X-Test-Caller": caller}
        )
        assert response.status_code == 403, caller
    response = client.post("/fhir/CodeSystem/$load", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    task = response.json()
    assert task["resourceType"] == "Task" and task["status"] == "in-progress"
    import time

    for _ in range(200):
        stored = client.get(f"/fhir/Task/{task['id']}", headers=ADMIN).json()
        if stored["status"] != "in-progress":
            break
        time.sleep(0.05)
    assert stored["status"] == "completed", stored
    old = _get(client, f"/fhir/CodeSystem/$lookup?system={ICD}&code=E11.9&version=2019")
    assert parameter(old, "display") == "Type 2 diabetes mellitus (2019 text)"
    # The newest load is what an unversioned request means; the other stays queryable.
    latest = _get(client, f"/fhir/CodeSystem/$lookup?system={ICD}&code=E11.9")
    assert parameter(latest, "version") == "2019"
    versions = client.get(f"/fhir/CodeSystem?url={ICD}", headers=CLIN_A).json()
    assert {e["resource"]["version"] for e in versions.get("entry", [])} >= {"2019"}
    missing = dict(body, parameter=[{"name": "source", "valueCode": "nope"}])
    assert client.post("/fhir/CodeSystem/$load", json=missing, headers=ADMIN).status_code == 400
