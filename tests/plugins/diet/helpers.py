"""Shared by the diet tests: a patient with a record, and an independent reading of SR28.

``sr28_per_100g`` reads the committed SR28 extract with the csv module alone, not through the
plugin, so totals recomputed from it check the plugin's arithmetic rather than repeat it.
"""

from __future__ import annotations

import csv
import gzip
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[3] / "plugins" / "diet" / "data"
COLUMNS = {
    "energy": "energy (kcal)",
    "protein": "protein (g)",
    "fat": "fat (g)",
    "saturated-fat": "saturated-fat (g)",
    "carbohydrate": "carbohydrate (g)",
    "fibre": "fibre (g)",
    "sugars": "sugars (g)",
    "sodium": "sodium (mg)",
    "potassium": "potassium (mg)",
    "calcium": "calcium (mg)",
    "magnesium": "magnesium (mg)",
    "phosphorus": "phosphorus (mg)",
    "cholesterol": "cholesterol (mg)",
    "iron": "iron (mg)",
    "vitamin-c": "vitamin-c (mg)",
}


@cache
def sr28_per_100g() -> dict[str, dict[str, float]]:
    with gzip.open(DATA / "sr28" / "foods.csv.gz", "rt", encoding="utf-8") as handle:
        return {
            row["ndb"]: {n: float(row[c] or 0) for n, c in COLUMNS.items()}
            for row in csv.DictReader(handle)
        }


@cache
def curated_tags() -> dict[str, set[str]]:
    with open(DATA / "foods.csv", encoding="utf-8") as handle:
        return {row["id"]: set(row["tags"].split()) for row in csv.DictReader(handle)}


def parts(parameter: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for part in parameter.get("part", []):
        key = next(k for k in part if k.startswith("value"))
        found.setdefault(part["name"], part[key])
    return found


def named(result: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [p for p in result["parameter"] if p["name"] == name]


def value(result: dict[str, Any], name: str) -> Any:
    parameter = named(result, name)[0]
    if "resource" in parameter:
        return parameter["resource"]
    return next(parameter[k] for k in parameter if k.startswith("value"))


def recomputed_totals(result: dict[str, Any]) -> dict[str, float]:
    """Nutrient totals from the answer's food list (grams) and the SR28 table."""
    table = sr28_per_100g()
    totals = dict.fromkeys(COLUMNS, 0.0)
    for food in named(result, "food"):
        item = parts(food)
        for nutrient in COLUMNS:
            totals[nutrient] += table[item["food"]][nutrient] * item["grams"] / 100
    return totals


def assert_meets_every_bound(result: dict[str, Any], relative: float = 0.002) -> None:
    """Every total the answer reports, recomputed independently, lies within its bounds."""
    recomputed = recomputed_totals(result)
    for total in named(result, "total"):
        item = parts(total)
        nutrient, amount = item["nutrient"], recomputed[item["nutrient"]]
        assert abs(amount - item["value"]) <= max(0.05, relative * abs(amount)), (nutrient, amount)
        if "min" in item:
            assert amount >= item["min"] * (1 - relative) - 0.05, (nutrient, amount, item)
        if "max" in item:
            assert amount <= item["max"] * (1 + relative) + 0.05, (nutrient, amount, item)


def patient_bundle(
    patient_id: str,
    *,
    birth_date: str = "1966-04-02",
    gender: str = "male",
    weight_kg: float = 84.0,
    height_cm: float = 176.0,
    conditions: tuple[tuple[str, str], ...] = (),
    allergies: tuple[tuple[str, str], ...] = (),
) -> dict[str, Any]:
    """A transaction Bundle writing a patient with weight, height, conditions and allergies."""
    ref = f"Patient/{patient_id}"
    entries: list[dict[str, Any]] = [
        {
            "resource": {
                "resourceType": "Patient",
                "id": patient_id,
                "name": [{"family": f"Diet{patient_id}", "given": ["Test"]}],
                "gender": gender,
                "birthDate": birth_date,
            },
            "request": {"method": "PUT", "url": ref},
        }
    ]
    for code, display, value_, unit in (
        ("29463-7", "Body weight", weight_kg, "kg"),
        ("8302-2", "Body height", height_cm, "cm"),
    ):
        entries.append(
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {
                        "coding": [{"system": "http://loinc.org", "code": code, "display": display}]
                    },
                    "subject": {"reference": ref},
                    "effectiveDateTime": "2026-01-10T09:00:00Z",
                    "valueQuantity": {
                        "value": value_,
                        "unit": unit,
                        "system": "http://unitsofmeasure.org",
                        "code": unit,
                    },
                },
                "request": {"method": "POST", "url": "Observation"},
            }
        )
    for code, display in conditions:
        entries.append(
            {
                "resource": {
                    "resourceType": "Condition",
                    "clinicalStatus": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                "code": "active",
                            }
                        ]
                    },
                    "code": {
                        "coding": [
                            {"system": "http://snomed.info/sct", "code": code, "display": display}
                        ],
                        "text": display,
                    },
                    "subject": {"reference": ref},
                },
                "request": {"method": "POST", "url": "Condition"},
            }
        )
    for code, display in allergies:
        entries.append(
            {
                "resource": {
                    "resourceType": "AllergyIntolerance",
                    "clinicalStatus": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                                "code": "active",
                            }
                        ]
                    },
                    "code": {
                        "coding": [
                            {"system": "http://snomed.info/sct", "code": code, "display": display}
                        ],
                        "text": display,
                    },
                    "patient": {"reference": ref},
                },
                "request": {"method": "POST", "url": "AllergyIntolerance"},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def parameters(*pairs: tuple[str, Any]) -> dict[str, Any]:
    out = []
    for name, item in pairs:
        if isinstance(item, bool):
            out.append({"name": name, "valueBoolean": item})
        elif isinstance(item, int | float):
            out.append({"name": name, "valueDecimal": item})
        elif isinstance(item, dict):
            out.append({"name": name, **item})
        else:
            out.append({"name": name, "valueString": item})
    return {"resourceType": "Parameters", "parameter": out}
