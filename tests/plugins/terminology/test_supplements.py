"""Nested expansions of a hierarchical CodeSystem (``excludeNested=false``) and CodeSystem
supplements (designations and properties added to another code system's concepts)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub
from tests.plugins.terminology.conftest import as_caller, parameter, properties

pytestmark = pytest.mark.xdist_group("terminology")

CLIN = as_caller(None, "clinician-a")  # type: ignore[arg-type]
ADMIN = as_caller(None, "admin")  # type: ignore[arg-type]

DEPARTMENTS = "http://example.org/fhir/CodeSystem/departments"
FRENCH = "http://example.org/fhir/CodeSystem/departments-fr"
VALUE_SET = "http://example.org/fhir/ValueSet/departments-fr"


@pytest.fixture(scope="module")
def loaded(client: TestClient, hub: Hub) -> None:
    system = {
        "resourceType": "CodeSystem",
        "url": DEPARTMENTS,
        "version": "1",
        "status": "active",
        "content": "complete",
        "hierarchyMeaning": "is-a",
        "concept": [
            {
                "code": "med",
                "display": "Medicine",
                "concept": [
                    {
                        "code": "card",
                        "display": "Cardiology",
                        "concept": [{"code": "echo", "display": "Echocardiography"}],
                    },
                    {"code": "resp", "display": "Respiratory medicine"},
                ],
            },
            {"code": "surg", "display": "Surgery"},
        ],
    }
    supplement = {
        "resourceType": "CodeSystem",
        "url": FRENCH,
        "version": "1",
        "status": "active",
        "content": "supplement",
        "supplements": DEPARTMENTS,
        "concept": [
            {"code": "med", "designation": [{"language": "fr", "value": "Médecine"}]},
            {
                "code": "card",
                "designation": [{"language": "fr", "value": "Cardiologie"}],
                "property": [{"code": "floor", "valueString": "3"}],
            },
        ],
    }
    value_set = {
        "resourceType": "ValueSet",
        "url": VALUE_SET,
        "status": "active",
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/valueset-supplement",
                "valueCanonical": FRENCH,
            }
        ],
        "compose": {"include": [{"system": DEPARTMENTS}]},
    }
    for resource in (system, supplement, value_set):
        response = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=ADMIN)
        assert response.status_code == 201, response.text
    assert hub.dispatcher is not None
    hub.dispatcher.wait_idle()


def _expand(client: TestClient, query: str, status: int = 200) -> Any:
    response = client.get(f"/fhir/ValueSet/$expand?{query}", headers=CLIN)
    assert response.status_code == status, response.text
    return response.json()


def _tree(contains: list[dict[str, Any]]) -> list[Any]:
    return [(c["code"], _tree(c["contains"])) if "contains" in c else c["code"] for c in contains]


def test_an_expansion_nests_codes_under_their_parents_when_asked(
    client: TestClient, loaded: None
) -> None:
    nested = _expand(client, f"url={DEPARTMENTS}?fhir_vs&excludeNested=false")
    assert nested["expansion"]["total"] == 5
    assert _tree(nested["expansion"]["contains"]) == [
        ("med", [("card", ["echo"]), "resp"]),
        "surg",
    ]
    # By default, and when paged, the expansion is flat (a page of a tree means nothing).
    flat = _expand(client, f"url={DEPARTMENTS}?fhir_vs")
    assert _tree(flat["expansion"]["contains"]) == ["med", "card", "echo", "resp", "surg"]
    paged = _expand(client, f"url={DEPARTMENTS}?fhir_vs&excludeNested=false&count=2")
    assert _tree(paged["expansion"]["contains"]) == ["med", "card"]
    assert {"name": "excludeNested", "valueBoolean": True} in paged["expansion"]["parameter"]
    # Codes nest under codes of the expansion only: without card, echo stands at the top.
    below = _expand(client, f"url={DEPARTMENTS}?fhir_vs=isa/card&excludeNested=false")
    assert _tree(below["expansion"]["contains"]) == [("card", ["echo"])]
    value_set = {
        "resourceType": "ValueSet",
        "status": "active",
        "compose": {
            "include": [{"system": DEPARTMENTS, "concept": [{"code": "echo"}, {"code": "med"}]}]
        },
    }
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "valueSet", "resource": value_set},
            {"name": "excludeNested", "valueBoolean": False},
        ],
    }
    response = client.post("/fhir/ValueSet/$expand", json=body, headers=CLIN)
    assert response.status_code == 200, response.text
    assert _tree(response.json()["expansion"]["contains"]) == ["med", "echo"]


def test_a_supplement_adds_designations_to_expansions_when_used(
    client: TestClient, loaded: None
) -> None:
    def displays(query: str) -> dict[str, str]:
        contains = _expand(client, query)["expansion"]["contains"]
        return {c["code"]: c["display"] for c in contains}

    plain = f"url={DEPARTMENTS}?fhir_vs&displayLanguage=fr"
    assert displays(plain)["med"] == "Medicine"  # a supplement is used only when asked for
    used = displays(f"{plain}&useSupplement={FRENCH}")
    assert (used["med"], used["card"], used["surg"]) == ("Médecine", "Cardiologie", "Surgery")
    # The value set's supplement extension asks for it too.
    assert displays(f"url={VALUE_SET}&displayLanguage=fr")["card"] == "Cardiologie"
    designated = _expand(client, f"url={VALUE_SET}&includeDesignations=true")
    card = next(c for c in designated["expansion"]["contains"] if c["code"] == "card")
    assert card["designation"] == [{"value": "Cardiologie", "language": "fr"}]
    assert {"name": "used-supplement", "valueUri": f"{FRENCH}|1"} in designated["expansion"][
        "parameter"
    ]


def test_lookup_with_a_supplement_and_bad_supplements(client: TestClient, loaded: None) -> None:
    base = f"/fhir/CodeSystem/$lookup?system={DEPARTMENTS}&code=card"
    plain = client.get(base, headers=CLIN).json()
    assert properties(plain, "floor") == [] and parameter(plain, "designation") is None
    used = client.get(f"{base}&useSupplement={FRENCH}", headers=CLIN).json()
    assert properties(used, "floor") == ["3"]
    assert {"name": "value", "valueString": "Cardiologie"} in parameter(used, "designation")
    unknown = client.get(f"{base}&useSupplement=http://example.org/none", headers=CLIN)
    assert unknown.status_code == 404 and "not known" in unknown.text
    not_one = client.get(f"{base}&useSupplement={DEPARTMENTS}", headers=CLIN)
    assert not_one.status_code == 400 and "not a supplement" in not_one.text
    _expand(client, f"url={DEPARTMENTS}?fhir_vs&useSupplement={DEPARTMENTS}", status=400)
