"""``$diet-optimise`` over the REST API on a real hub (SQLite): plans checked independently
against SR28, infeasible targets explained, allergies respected, bad input refused."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub, build_hub
from tests.conftest import make_settings
from tests.plugins.diet.helpers import (
    assert_meets_every_bound,
    curated_tags,
    named,
    parameters,
    parts,
    patient_bundle,
    value,
)

HYPERTENSION = ("38341003", "Hypertension")
DIABETES = ("44054006", "Diabetes mellitus type 2")
PEANUT = ("91935009", "Allergy to peanuts")
SHELLFISH = ("300913006", "Shellfish allergy")


@pytest.fixture
def hub(sqlite_url: str, tmp_path: Any) -> Iterator[Hub]:
    hub = build_hub(make_settings(sqlite_url, tmp_path, listeners=False))
    yield hub
    hub.close()


@pytest.fixture
def client(hub: Hub) -> Iterator[TestClient]:
    from fhirhub.core.http.app import create_app

    with TestClient(create_app(hub=hub), base_url="http://testserver") as test_client:
        assert (
            test_client.post(
                "/fhir",
                json=patient_bundle(
                    "p1", conditions=(HYPERTENSION, DIABETES), allergies=(PEANUT, SHELLFISH)
                ),
            ).status_code
            == 200
        )
        assert test_client.post("/fhir", json=patient_bundle("p2")).status_code == 200
        yield test_client


def optimise(client: TestClient, patient: str | None, *pairs: tuple[str, Any]) -> Any:
    url = f"/fhir/Patient/{patient}/$diet-optimise" if patient else "/fhir/$diet-optimise"
    return client.post(url, json=parameters(*pairs))


def test_profiles_come_from_conditions_and_the_plan_meets_every_bound(client: TestClient) -> None:
    response = optimise(client, "p1")
    assert response.status_code == 200, response.text
    result = response.json()
    assert value(result, "status") == "optimal"
    assert {p["valueString"] for p in named(result, "profileVersion")} == {
        "general|1.0.0",
        "dash|1.0.0",
        "diabetes|1.0.0",
    }
    assert_meets_every_bound(result)
    totals = {parts(t)["nutrient"]: parts(t) for t in named(result, "total")}
    assert totals["sodium"]["max"] == 2300
    assert totals["potassium"]["min"] == 4700  # DASH replaces the general adequate intake
    assert len(totals) == 15
    # Energy from Mifflin-St Jeor with the record's weight and height, light activity.
    assert "Mifflin-St Jeor" in value(result, "energy")
    assert "male" in value(result, "energy") and "84.0 kg, 176.0 cm" in value(result, "energy")


def test_the_draft_order_and_its_provenance_are_stored_together(client: TestClient) -> None:
    result = optimise(client, "p1", ("profile", "dash")).json()
    order = value(result, "nutritionOrder")
    assert order["status"] == "draft" and order["intent"] == "order"
    stored = client.get(f"/fhir/NutritionOrder/{order['id']}").json()
    assert stored["patient"]["reference"] == "Patient/p1"
    items = stored["oralDiet"]["extension"]
    assert {i["extension"][0]["valueCoding"]["code"] for i in items} == {
        parts(f)["food"] for f in named(result, "food")
    }
    limits = {
        n["modifier"]["coding"][0]["code"]: n["amount"]["value"]
        for n in stored["oralDiet"]["nutrient"]
    }
    assert limits["sodium"] == 2300
    assert "Breakfast:" in stored["oralDiet"]["instruction"]
    bundle = client.get(f"/fhir/Provenance?target=NutritionOrder/{order['id']}").json()
    ours = [
        e["resource"]
        for e in bundle.get("entry", [])
        if any(
            "diet profile" in (x["what"].get("display") or "")
            for x in e["resource"].get("entity", [])
        )
    ]
    assert len(ours) == 1
    displays = [x["what"].get("display", "") for x in ours[0]["entity"]]
    assert "diet profile dash version 1.0.0" in displays
    assert any(d.startswith("food table: USDA National Nutrient Database") for d in displays)


def test_store_false_writes_nothing(client: TestClient) -> None:
    result = optimise(client, "p2", ("store", False)).json()
    assert "id" not in value(result, "nutritionOrder")
    assert client.get("/fhir/NutritionOrder?patient=p2").json().get("total", 0) == 0


def test_allergies_exclude_foods(client: TestClient) -> None:
    result = optimise(
        client,
        "p1",
        ("profile", "general"),
        ("objective", "preference"),
        ("prefer", "nut-seed"),
        ("prefer", "shellfish"),
        ("prefer", "legume"),
    ).json()
    assert value(result, "status") == "optimal"
    tags = curated_tags()
    chosen = [parts(f) for f in named(result, "food")]
    assert chosen
    for food in chosen:
        assert not tags[food["food"]] & {"peanut", "shellfish"}, food
        assert not re.match(r"Peanut|Crustaceans|Mollusks", food["name"]), food
    assert "allergy or intolerance: Allergy to peanuts" in value(result, "plan")


def test_a_pattern_and_exclusions(client: TestClient) -> None:
    result = optimise(client, "p2", ("pattern", "vegan"), ("exclude", "grain")).json()
    assert value(result, "status") == "optimal", value(result, "plan")
    for food in named(result, "food"):
        item = parts(food)
        assert item["group"] not in (
            "grain",
            "dairy",
            "egg",
            "poultry",
            "red-meat",
            "pork",
            "fish",
            "shellfish",
        )
    assert_meets_every_bound(result)


def test_swapping_a_food_out_re_solves_without_it(client: TestClient) -> None:
    first = optimise(client, "p2", ("store", False)).json()
    swapped = parts(named(first, "food")[0])["food"]
    second = optimise(client, "p2", ("store", False), ("exclude", swapped)).json()
    assert value(second, "status") == "optimal"
    assert swapped not in {parts(f)["food"] for f in named(second, "food")}
    assert value(second, "cost") >= value(first, "cost") - 1e-6  # the optimum can only rise


def test_conflicting_profiles_are_explained(client: TestClient) -> None:
    result = optimise(client, "p2", ("profile", "dash"), ("profile", "ckd")).json()
    assert value(result, "status") == "infeasible"
    assert not named(result, "nutritionOrder")
    conflicts: dict[int, set[str]] = {}
    for item in named(result, "explanation"):
        p = parts(item)
        conflicts.setdefault(p["conflict"], set()).add(p["id"])
    assert {"nutrient:potassium:min", "nutrient:potassium:max"} in conflicts.values()
    assert {"nutrient:protein:min", "nutrient:protein:max"} in conflicts.values()
    relaxations = {parts(r)["id"]: parts(r) for r in named(result, "relaxation")}
    # Lowering DASH's potassium minimum to CKD's maximum is the smallest relative change.
    assert relaxations["nutrient:potassium:min"]["relaxTo"] == pytest.approx(2000, abs=1)
    assert client.get("/fhir/NutritionOrder?patient=p2").json().get("total", 0) == 0


def test_type_level_form_with_explicit_person(client: TestClient) -> None:
    result = optimise(
        client,
        None,
        ("age", 45),
        ("sex", {"valueCode": "female"}),
        ("weight", {"valueQuantity": {"value": 150, "code": "[lb_av]"}}),
        ("height", {"valueQuantity": {"value": 165, "code": "cm"}}),
        ("profile", "dash-1500"),
    ).json()
    assert value(result, "status") == "optimal"
    order = value(result, "nutritionOrder")
    assert "id" not in order and order["patient"]["display"]  # computed, not stored
    assert client.get("/fhir/NutritionOrder").json().get("total", 0) == 0
    totals = {parts(t)["nutrient"]: parts(t) for t in named(result, "total")}
    assert totals["sodium"]["max"] == 1500
    assert "68.0 kg, 165.0 cm" in value(result, "energy")
    assert_meets_every_bound(result)


@pytest.mark.parametrize(
    ("pairs", "text"),
    [
        ((("profile", "keto"),), "Unknown profile 'keto'"),
        ((("age", 40), ("sex", {"valueCode": "male"}), ("weight", -70)), "may not be negative"),
        (
            (
                ("age", 40),
                ("sex", {"valueCode": "male"}),
                ("weight", {"valueQuantity": {"value": 70, "code": "stone"}}),
            ),
            "unit 'stone'",
        ),
        ((("objective", "taste"),), "objective must be one of"),
        ((("exclude", "unicorn"),), "'unicorn' is not a food id"),
        ((("colour", "blue"),), "Unknown parameter 'colour'"),
        ((("maxServingsPerFood", 0),), "at least 1"),
        ((("servingStep", 0.3),), "servingStep must be one of"),
        ((("age", 12), ("sex", {"valueCode": "male"}), ("weight", 40)), "for adults"),
        ((), "needs the age, sex and weight"),
    ],
)
def test_bad_input_is_a_400_operation_outcome(client: TestClient, pairs: Any, text: str) -> None:
    response = optimise(client, None, *pairs)
    assert response.status_code == 400, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert text in outcome["issue"][0]["diagnostics"]


def test_negative_weight_on_a_patient_and_unknown_patient(client: TestClient) -> None:
    response = optimise(client, "p1", ("weight", -1))
    assert response.status_code == 400
    assert optimise(client, "nobody").status_code == 404


def test_get_is_refused_because_the_operation_stores(client: TestClient) -> None:
    assert client.get("/fhir/Patient/p1/$diet-optimise").status_code == 405


def test_whole_servings(client: TestClient) -> None:
    result = optimise(
        client, "p2", ("profile", "general"), ("integer", True), ("store", False)
    ).json()
    if value(result, "status") != "optimal":  # a loaded machine may hit the time limit
        assert "Whole servings: no plan found" in value(result, "plan")
        return
    for food in named(result, "food"):
        assert parts(food)["servings"] == pytest.approx(round(parts(food)["servings"]), abs=1e-6)
    assert_meets_every_bound(result)


def test_the_capability_statement_lists_the_operations(client: TestClient) -> None:
    statement = client.get("/fhir/metadata").json()
    text = str(statement)
    assert "diet-optimise" in text and "diet-approve" in text
