"""The shipped definitions are what tools/derive_validation_data.py makes from the R4 files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from fhirhub.fhir_store.validation.schema import schema

REPO = Path(__file__).resolve().parents[3]
DEFINITIONS = REPO / "fhir_store" / "definitions"
SOURCE = REPO.parent / "shared" / "fhir-r4"
FILES = (
    "r4-structure.json",
    "required-bindings.json",
    "coded-bindings.json",
    "r4-resource-types.json",
)


def load(name: str) -> dict[str, object]:
    data = json.loads((DEFINITIONS / name).read_text())
    assert isinstance(data, dict)
    return data


def test_bindings_hold_the_codes_of_well_known_value_sets() -> None:
    value_sets = load("required-bindings.json")["valueSets"]
    assert isinstance(value_sets, dict)
    gender = value_sets["http://hl7.org/fhir/ValueSet/administrative-gender"]
    assert gender == {
        "http://hl7.org/fhir/administrative-gender": ["female", "male", "other", "unknown"]
    }
    assert (
        "final"
        in value_sets["http://hl7.org/fhir/ValueSet/observation-status"][
            "http://hl7.org/fhir/observation-status"
        ]
    )
    unchecked = load("required-bindings.json")["unchecked"]
    assert isinstance(unchecked, dict)
    assert "http://hl7.org/fhir/ValueSet/mimetypes" in unchecked
    assert "http://hl7.org/fhir/ValueSet/ucum-units" in unchecked


def test_bindings_are_attached_to_datatype_elements_too() -> None:
    datatypes = schema().datatypes
    for type_name, element in [
        ("Quantity", "comparator"),
        ("ContactPoint", "system"),
        ("HumanName", "use"),
        ("Address", "use"),
        ("Identifier", "use"),
        ("Narrative", "status"),
    ]:
        binding = datatypes[type_name].slots[element].binding
        assert binding is not None and binding.codes, (type_name, element)


def test_schema_covers_every_r4_type() -> None:
    compiled = schema()
    assert len(compiled.resources) == 146
    assert "valueMeta" in compiled.datatypes["Extension"].slots
    questionnaire_item = compiled.resources["Questionnaire"].slots["item"].node
    assert questionnaire_item is not None
    assert questionnaire_item.slots["item"].node is questionnaire_item  # contentReference


@pytest.mark.skipif(not SOURCE.is_dir(), reason="R4 definitions in ../shared not present")
def test_derivation_is_reproducible(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "derive_validation_data", REPO / "tools" / "derive_validation_data.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (DEFINITIONS / name).read_bytes(), name
