"""The SearchParameter registry: official R4 parameters split per base, run-time additions."""

from __future__ import annotations

import pytest

from fhirhub.fhir_store.errors import FhirError
from fhirhub.fhir_store.search.parameters import (
    default_registry,
    expression_for,
    split_union,
)


def test_shared_expression_is_split_per_base() -> None:
    registry = default_registry()
    code = registry.get("Condition", "code")
    assert code is not None
    assert code.type == "token"
    assert code.expression == "Condition.code"
    assert "Observation" in code.base
    assert code.url == "http://hl7.org/fhir/SearchParameter/clinical-code"
    patient = registry.get("Observation", "patient")
    assert patient is not None
    assert patient.expression == "Observation.subject.where(resolve() is Patient)"
    assert patient.target == ("Group", "Patient") or "Patient" in patient.target


def test_resource_level_parameters_apply_to_every_type() -> None:
    registry = default_registry()
    types = registry.resource_types()
    assert len(types) == 146
    assert "Binary" in types and "Parameters" in types
    assert "SubscriptionStatus" not in types  # R4B only
    for resource_type in ("Binary", "Patient", "Observation"):
        params = registry.for_type(resource_type)
        for code in ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source"):
            assert code in params, (resource_type, code)
    tag = registry.get("Binary", "_tag")
    assert tag is not None and tag.expression == "Binary.meta.tag"
    text = registry.get("Patient", "_text")
    assert text is not None and text.expression is None


def test_composite_and_value_choice_definitions() -> None:
    registry = default_registry()
    composite = registry.get("Observation", "code-value-quantity")
    assert composite is not None and composite.type == "composite"
    assert composite.components[1] == (
        "http://hl7.org/fhir/SearchParameter/Observation-value-quantity",
        "value.ofType(Quantity)",
    )
    assert composite.multiple_or is False
    value = registry.get("Observation", "value-quantity")
    assert value is not None
    assert split_union(value.expression or "") == [
        "(Observation.value.ofType(Quantity))",
        "(Observation.value.ofType(SampledData))",
    ]
    assert registry.by_url(composite.url) is not None
    assert registry.get("Observation", "no-such-param") is None
    assert registry.get("NoSuchType", "code") is None


def test_split_union_respects_parentheses_and_strings() -> None:
    assert split_union("A.b.where(x='a|b') | (A.c as Quantity)") == [
        "A.b.where(x='a|b')",
        "(A.c as Quantity)",
    ]
    assert expression_for("A.x | B.y | Resource.z", ["A", "B"], "B") == "B.y | B.z"


CUSTOM = {
    "resourceType": "SearchParameter",
    "url": "http://example.org/SearchParameter/patient-birth-place",
    "name": "birthplace",
    "status": "active",
    "code": "birthplace",
    "base": ["Patient"],
    "type": "string",
    "expression": "Patient.extension('http://hl7.org/fhir/StructureDefinition/patient-birthPlace').value.ofType(Address)",
}


def test_add_and_remove_runtime_parameter() -> None:
    registry = default_registry()
    generation = registry.generation
    added = registry.add(CUSTOM)
    assert added.code == "birthplace"
    assert registry.get("Patient", "birthplace") is not None
    assert registry.by_url(CUSTOM["url"]) is not None
    assert registry.generation > generation
    # A fresh default registry does not see the addition.
    assert default_registry().get("Patient", "birthplace") is None
    assert registry.remove(CUSTOM["url"]) is True
    assert registry.get("Patient", "birthplace") is None
    assert registry.remove(CUSTOM["url"]) is False


@pytest.mark.parametrize(
    "change",
    [
        {"expression": "Patient.name.where(("},
        {"type": "bogus"},
        {"base": ["NoSuchType"]},
        {"code": None},
        {"resourceType": "Patient"},
    ],
)
def test_add_refuses_unusable_definitions(change: dict[str, object]) -> None:
    registry = default_registry()
    with pytest.raises(FhirError) as caught:
        registry.add({**CUSTOM, **change})
    assert caught.value.status == 400
    assert registry.get("Patient", "birthplace") is None
