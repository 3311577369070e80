"""The shipped demo patients: current with their generator, valid R4, loadable, fictional."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhirhub.core.demo import DEMO_DIR, load_demo_data
from fhirhub.core.http.app import create_app
from fhirhub.core.hub import Hub
from fhirhub.fhir_store.validation import resource_issues
from tests.conftest import REPO, SHARED

VITALS = {"85354-9", "8867-4", "29463-7", "8302-2", "8310-5"}


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_demo_data", REPO / "tools/make_demo_data.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


#: The other systems' records of demo people (for the master patient index), not a patient.
OTHER_SOURCES = "10-other-sources.json"


def bundles() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DEMO_DIR.glob("*.json"))}


def patient_bundles() -> dict[str, dict[str, Any]]:
    return {name: bundle for name, bundle in bundles().items() if name != OTHER_SOURCES}


def test_committed_files_match_the_generator() -> None:
    """Regenerate in memory: the committed files must be byte-identical (deterministic)."""
    generated = generator().generate()
    committed = {path.name: path.read_text() for path in sorted(DEMO_DIR.glob("*.json"))}
    assert generated == committed, "run: .venv/bin/python tools/make_demo_data.py"


def test_demo_data_is_small_and_has_8_to_10_patients() -> None:
    files = list(DEMO_DIR.glob("*.json"))
    assert 8 <= len(files) <= 10
    assert sum(path.stat().st_size for path in files) < 450_000


def test_every_bundle_is_a_valid_r4_transaction_of_posts() -> None:
    for name, bundle in bundles().items():
        assert bundle["type"] == "transaction", name
        assert resource_issues(bundle) == [], name
        for entry in bundle["entry"]:
            assert entry["fullUrl"].startswith("urn:uuid:"), name
            assert entry["request"]["method"] == "POST", name
            assert resource_issues(entry["resource"]) == [], (name, entry["fullUrl"])


def test_each_patient_has_the_full_record() -> None:
    for name, bundle in patient_bundles().items():
        resources = [entry["resource"] for entry in bundle["entry"]]
        types = Counter(r["resourceType"] for r in resources)
        assert types["Patient"] == 1, name
        for needed in ("Encounter", "Condition", "MedicationRequest", "Immunization"):
            assert types[needed] >= 1, (name, needed)
        patient = next(r for r in resources if r["resourceType"] == "Patient")
        assert patient["identifier"][0]["system"] and patient["identifier"][0]["value"]
        assert patient["birthDate"] and patient["address"]
        vitals = [r for r in resources if r["resourceType"] == "Observation"]
        codes = Counter(r["code"]["coding"][0]["code"] for r in vitals)
        assert set(codes) == VITALS, name
        assert min(codes.values()) >= 5, "vital signs are a series over time"
        for observation in vitals:
            assert observation["category"][0]["coding"][0]["code"] == "vital-signs"
            quantities = [observation.get("valueQuantity")] + [
                c["valueQuantity"] for c in observation.get("component", [])
            ]
            for quantity in filter(None, quantities):
                assert quantity["system"] == "http://unitsofmeasure.org"
        panel = next(r for r in vitals if r["code"]["coding"][0]["code"] == "85354-9")
        assert "valueQuantity" not in panel
        assert [c["code"]["coding"][0]["code"] for c in panel["component"]] == [
            "8480-6",
            "8462-4",
        ]
    all_types = Counter(
        entry["resource"]["resourceType"] for b in bundles().values() for entry in b["entry"]
    )
    assert all_types["AllergyIntolerance"] >= 5
    assert all_types["ImagingStudy"] >= 2


def test_demo_patients_are_not_copied_from_the_synthea_sample() -> None:
    synthea = SHARED / "data" / "synthea"
    if not synthea.is_dir():
        pytest.skip("../shared/data/synthea is not present")
    families = {
        entry["resource"]["name"][0]["family"]
        for bundle in bundles().values()
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == "Patient"
    }
    for path in synthea.glob("*.json"):
        text = path.read_text()
        assert not [family for family in families if f'"{family}"' in text], path.name


def fhir_total(client: TestClient, query: str) -> int:
    response = client.get(f"/fhir/{query}", headers={"Accept": "application/fhir+json"})
    assert response.status_code == 200, response.text
    total: int = response.json()["total"]
    return total


def test_load_demo_data_into_an_empty_store_once(hub: Hub, tmp_path: Path) -> None:
    loaded = load_demo_data(hub)
    expected = sum(len(b["entry"]) for b in bundles().values())
    assert loaded == expected
    assert load_demo_data(hub) == 0, "a store with patients is left alone"
    client = TestClient(create_app(hub=hub))
    assert fhir_total(client, "Patient?_summary=count") == len(patient_bundles()) + 2
    assert fhir_total(client, "Organization?_summary=count") == 1, "ifNoneExist shares the clinic"
    assert fhir_total(client, "Patient?name=okafor") == 2, "the clinic's and the lab's record"
    assert fhir_total(client, "Patient?birthdate=1958-03-14") == 2
    assert fhir_total(client, "Patient?identifier=https://fhirhub.example.org/demo/mrn|100236") == 1
    patient = client.get("/fhir/Patient?identifier=100234").json()["entry"][0]["resource"]
    vitals = fhir_total(client, f"Observation?patient=Patient/{patient['id']}&category=vital-signs")
    assert vitals == 35
    assert fhir_total(client, "Observation?code=http://loinc.org|85354-9") == 7 * len(
        patient_bundles()
    )


def test_other_sources_hold_a_linkable_record_and_a_doubtful_one() -> None:
    """What the master patient index shows in the demo (docs/mpi.md): the lab's record of
    Amara Okafor-Lindqvist, and the radiology system's "Toby Wrenfeld"."""
    resources = [entry["resource"] for entry in bundles()[OTHER_SOURCES]["entry"]]
    patients = {r["name"][0]["family"]: r for r in resources if r["resourceType"] == "Patient"}
    assert set(patients) == {"Okafor-Lindqvist", "Wrenfeld"}
    assert patients["Okafor-Lindqvist"]["birthDate"] == "1958-03-14"
    assert patients["Wrenfeld"]["birthDate"] == "1984-02-11"  # day and month swapped
