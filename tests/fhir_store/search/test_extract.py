"""Index rows extracted from representative resources, one test per parameter type."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from fhirhub.fhir_store.search.extract import (
    Extractor,
    compile_expression,
    compile_fallback,
    compile_fast,
    parse_reference,
)
from fhirhub.fhir_store.search.normalize import MAX_INSTANT, date_range
from fhirhub.fhir_store.search.parameters import default_registry


@pytest.fixture(scope="module")
def extractor() -> Extractor:
    return Extractor(default_registry())


def values(rows: dict[str, list[dict[str, Any]]], table: str, param: str) -> list[dict[str, Any]]:
    """The value columns of the rows of one parameter."""
    return [
        {k: v for k, v in row.items() if k not in ("resource_type", "resource_id", "param")}
        for row in rows.get(table, [])
        if row["param"] == param
    ]


PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "meta": {
        "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"],
        "tag": [{"system": "http://example.org/tags", "code": "test"}],
        "security": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
        ],
        "source": "http://example.org/source#abc",
        "lastUpdated": "2024-01-01T00:00:00Z",
    },
    "identifier": [
        {
            "system": "http://hospital.example.org/mrn",
            "value": "MRN-1",
            "type": {"text": "Medical Record Number"},
        }
    ],
    "name": [{"use": "official", "family": "Müller", "given": ["Zoë", "Anne"], "prefix": ["Dr."]}],
    "telecom": [
        {"system": "phone", "value": "555-1234"},
        {"system": "email", "value": "zoe@example.org"},
    ],
    "gender": "female",
    "birthDate": "1980-02",
    "address": [{"line": ["1 Main St"], "city": "Springfield", "postalCode": "01013"}],
    "active": True,
    "deceasedBoolean": False,
    "generalPractitioner": [{"reference": "Practitioner/dr1"}],
}


def test_patient_string_params(extractor: Extractor) -> None:
    rows = extractor.extract(PATIENT)
    assert {"value": "muller", "exact": "Müller"} in values(rows, "string", "family")
    names = values(rows, "string", "name")
    assert {r["value"] for r in names} == {"muller", "zoe", "anne", "dr."}
    assert {r["exact"] for r in values(rows, "string", "given")} == {"Zoë", "Anne"}
    assert {r["value"] for r in values(rows, "string", "address")} == {
        "1 main st",
        "springfield",
        "01013",
    }
    assert values(rows, "string", "address-city") == [
        {"value": "springfield", "exact": "Springfield"}
    ]
    # HumanName.use is not a string value of the name.
    assert all(r["value"] != "official" for r in names)


def test_patient_token_params(extractor: Extractor) -> None:
    rows = extractor.extract(PATIENT)
    assert values(rows, "token", "gender") == [{"system": None, "code": "female", "text": None}]
    assert values(rows, "token", "active") == [{"system": None, "code": "true", "text": None}]
    assert values(rows, "token", "identifier") == [
        {
            "system": "http://hospital.example.org/mrn",
            "code": "MRN-1",
            "text": "medical record number",
        }
    ]
    assert values(rows, "token", "email") == [
        {"system": "email", "code": "zoe@example.org", "text": None}
    ]
    assert values(rows, "token", "phone") == [{"system": "phone", "code": "555-1234", "text": None}]
    assert len(values(rows, "token", "telecom")) == 2
    # deceased is the one official expression the fast compiler does not handle.
    assert values(rows, "token", "deceased") == [{"system": None, "code": "false", "text": None}]


def test_meta_params(extractor: Extractor) -> None:
    rows = extractor.extract(PATIENT)
    assert values(rows, "token", "_tag") == [
        {"system": "http://example.org/tags", "code": "test", "text": None}
    ]
    assert values(rows, "token", "_security")[0]["code"] == "R"
    assert values(rows, "uri", "_profile") == [
        {"uri": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"}
    ]
    assert values(rows, "uri", "_source") == [{"uri": "http://example.org/source#abc"}]
    # _id and _lastUpdated are answered from resource_current, not from index rows.
    assert not any(r["param"] in ("_id", "_lastUpdated") for t in rows.values() for r in t)


def test_patient_date_and_reference(extractor: Extractor) -> None:
    rows = extractor.extract(PATIENT)
    assert values(rows, "date", "birthdate") == [
        dict(zip(("low", "high"), date_range("1980-02") or (), strict=True))
    ]
    assert values(rows, "reference", "general-practitioner") == [
        {"target_type": "Practitioner", "target_id": "dr1", "url": None, "version": None}
    ]


OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "vital-signs",
                }
            ]
        }
    ],
    "code": {
        "coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body Weight"}],
        "text": "Body weight",
    },
    "subject": {"reference": "Patient/p1"},
    "encounter": {"reference": "Encounter/e1"},
    "effectiveDateTime": "2020-03-04T10:00:00+01:00",
    "valueQuantity": {
        "value": 72.5,
        "unit": "kg",
        "system": "http://unitsofmeasure.org",
        "code": "kg",
    },
}

BLOOD_PRESSURE: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "bp",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
    "subject": {"reference": "Patient/p1"},
    "effectivePeriod": {"start": "2021-01-01T08:00:00Z"},
    "component": [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "valueQuantity": {
                "value": 120,
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        },
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
            "valueQuantity": {"value": 80, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
        },
    ],
}


def test_observation_token_quantity_date_reference(extractor: Extractor) -> None:
    rows = extractor.extract(OBSERVATION)
    assert values(rows, "token", "code") == [
        {"system": "http://loinc.org", "code": "29463-7", "text": "body weight"}
    ]
    assert values(rows, "token", "status") == [{"system": None, "code": "final", "text": None}]
    assert values(rows, "quantity", "value-quantity") == [
        {
            "value": 72.5,
            "low": 72.45,
            "high": 72.55,
            "system": "http://unitsofmeasure.org",
            "code": "kg",
            "unit": "kg",
        }
    ]
    low, high = date_range("2020-03-04T09:00:00Z") or (0, 0)
    assert values(rows, "date", "date") == [{"low": low, "high": high}]
    assert values(rows, "reference", "subject") == [
        {"target_type": "Patient", "target_id": "p1", "url": None, "version": None}
    ]
    assert values(rows, "reference", "patient") == values(rows, "reference", "subject")
    assert values(rows, "reference", "encounter")[0]["target_id"] == "e1"


def test_observation_composite_keeps_pairs_together(extractor: Extractor) -> None:
    rows = extractor.extract(OBSERVATION)
    [row] = values(rows, "composite", "code-value-quantity")
    assert row["key"] == "29463-7"
    code, quantity = orjson.loads(row["components"])
    assert code == {"system": "http://loinc.org", "code": "29463-7", "text": "body weight"}
    assert quantity["value"] == 72.5 and quantity["code"] == "kg"

    rows = extractor.extract(BLOOD_PRESSURE)
    pairs = {
        (c[0]["code"], c[1]["value"])
        for c in (
            orjson.loads(r["components"])
            for r in values(rows, "composite", "component-code-value-quantity")
        )
    }
    # Each component's code goes with its own value only.
    assert pairs == {("8480-6", 120.0), ("8462-4", 80.0)}
    combo = {
        (c[0]["code"], c[1]["value"])
        for c in (
            orjson.loads(r["components"])
            for r in values(rows, "composite", "combo-code-value-quantity")
        )
    }
    assert ("8480-6", 120.0) in combo and ("8480-6", 80.0) not in combo
    # An open-ended Period covers everything after its start.
    [period] = values(rows, "date", "date")
    assert period["high"] == MAX_INSTANT
    assert period["low"] == (date_range("2021-01-01T08:00:00Z") or (0, 0))[0]


def test_patient_reference_where_resolve_filters_by_type(extractor: Extractor) -> None:
    group_subject = {**OBSERVATION, "subject": {"reference": "Group/g1"}}
    rows = extractor.extract(group_subject)
    assert values(rows, "reference", "patient") == []
    assert values(rows, "reference", "subject")[0]["target_type"] == "Group"


def test_encounter_period_and_participant(extractor: Extractor) -> None:
    encounter = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p1"},
        "participant": [{"individual": {"reference": "Practitioner/dr1"}}],
        "period": {"start": "2020-01-01T10:00:00Z", "end": "2020-01-01T11:00:00Z"},
    }
    rows = extractor.extract(encounter)
    assert values(rows, "date", "date") == [
        {
            "low": (date_range("2020-01-01T10:00:00Z") or (0, 0))[0],
            "high": (date_range("2020-01-01T11:00:00Z") or (0, 0))[1],
        }
    ]
    assert values(rows, "token", "class")[0]["code"] == "AMB"
    assert values(rows, "reference", "practitioner")[0]["target_id"] == "dr1"
    assert values(rows, "reference", "participant")[0]["target_id"] == "dr1"


def test_medication_request_and_condition(extractor: Extractor) -> None:
    request = {
        "resourceType": "MedicationRequest",
        "id": "m1",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "834061"}]
        },
        "subject": {"reference": "Patient/p1"},
        "authoredOn": "2019-05-06",
    }
    rows = extractor.extract(request)
    assert values(rows, "token", "code")[0]["code"] == "834061"
    assert values(rows, "token", "intent")[0]["code"] == "order"
    assert values(rows, "date", "authoredon") == [
        dict(zip(("low", "high"), date_range("2019-05-06") or (), strict=True))
    ]
    assert values(rows, "reference", "medication") == []
    with_ref = {**request, "medicationReference": {"reference": "Medication/med1"}}
    del with_ref["medicationCodeableConcept"]
    rows = extractor.extract(with_ref)
    assert values(rows, "reference", "medication")[0]["target_id"] == "med1"
    assert values(rows, "token", "code") == []

    condition = {
        "resourceType": "Condition",
        "id": "c1",
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"text": "Headache"},
        "subject": {"reference": "Patient/p1"},
        "onsetString": "childhood",
        "recordedDate": "2020-05-01T00:00:00Z",
    }
    rows = extractor.extract(condition)
    assert values(rows, "token", "clinical-status")[0]["code"] == "active"
    # A CodeableConcept with text only yields a text-only token row (for :text).
    assert values(rows, "token", "code") == [{"system": None, "code": None, "text": "headache"}]
    assert values(rows, "string", "onset-info") == [{"value": "childhood", "exact": "childhood"}]
    assert values(rows, "date", "onset-date") == []
    assert len(values(rows, "date", "recorded-date")) == 1


def test_canonical_uri_and_reference_params(extractor: Extractor) -> None:
    plan = {
        "resourceType": "PlanDefinition",
        "id": "pd1",
        "url": "http://example.org/PlanDefinition/pd1",
        "version": "1.0",
        "status": "active",
        "library": ["http://example.org/Library/lib|2.0"],
        "relatedArtifact": [
            {"type": "depends-on", "resource": "http://example.org/Library/other"},
            {"type": "derived-from", "resource": "http://example.org/PlanDefinition/base"},
        ],
    }
    rows = extractor.extract(plan)
    assert values(rows, "uri", "url") == [{"uri": "http://example.org/PlanDefinition/pd1"}]
    assert values(rows, "token", "version")[0]["code"] == "1.0"
    depends = values(rows, "reference", "depends-on")
    assert {
        "target_type": None,
        "target_id": None,
        "url": "http://example.org/Library/lib",
        "version": "2.0",
    } in depends
    assert {
        "target_type": None,
        "target_id": None,
        "url": "http://example.org/Library/other",
        "version": None,
    } in depends
    assert [r["url"] for r in values(rows, "reference", "derived-from")] == [
        "http://example.org/PlanDefinition/base"
    ]


def test_number_and_money_params(extractor: Extractor) -> None:
    risk = {
        "resourceType": "RiskAssessment",
        "id": "r1",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "prediction": [{"probabilityDecimal": 0.25}],
    }
    rows = extractor.extract(risk)
    assert values(rows, "number", "probability") == [{"value": 0.25, "low": 0.245, "high": 0.255}]
    claim = {
        "resourceType": "ChargeItem",
        "id": "ci",
        "status": "billable",
        "code": {"text": "x"},
        "subject": {"reference": "Patient/p1"},
        "priceOverride": {"value": 12.5, "currency": "EUR"},
    }
    rows = extractor.extract(claim)
    assert values(rows, "quantity", "price-override") == [
        {
            "value": 12.5,
            "low": 12.45,
            "high": 12.55,
            "system": "urn:iso:std:iso:4217",
            "code": "EUR",
            "unit": "EUR",
        }
    ]


def test_parse_reference_shapes() -> None:
    assert parse_reference("Patient/1") == ("Patient", "1", None, None)
    assert parse_reference("Patient/1/_history/3") == ("Patient", "1", None, None)
    assert parse_reference("urn:uuid:abc") == (None, None, "urn:uuid:abc", None)
    assert parse_reference("http://x.org/fhir/Patient/1") == (
        None,
        None,
        "http://x.org/fhir/Patient/1",
        None,
    )
    assert parse_reference("http://x.org/ValueSet/v|4.0") == (
        None,
        None,
        "http://x.org/ValueSet/v",
        "4.0",
    )
    assert parse_reference("#contained") == (None, None, "#contained", None)


def test_fast_path_shapes() -> None:
    get = compile_fast("(Observation.value as Quantity).value | Observation.status", "Observation")
    assert get({"valueQuantity": {"value": 3}, "status": "final"}) == [3, "final"]
    get = compile_fast("Patient.extension('http://x/e').value.ofType(string)", "Patient")
    assert get(
        {"extension": [{"url": "http://x/e", "valueString": "a"}, {"url": "y", "valueString": "b"}]}
    ) == ["a"]
    get = compile_fast("Bundle.entry[0].resource", "Bundle")
    assert get({"entry": [{"resource": {"id": "1"}}, {"resource": {"id": "2"}}]}) == [{"id": "1"}]
    get = compile_fast("Observation.value", "Observation")
    assert get({"valueString": "x"}) == ["x"]
    get = compile_fast("Patient.name.first().given.exists()", "Patient")
    assert get({"name": [{"given": ["a"]}]}) == [True]


def test_every_param_compiles(extractor: Extractor) -> None:
    """Every non-special parameter of every type is compiled, nearly all without fhirpathpy."""
    registry = extractor.registry
    expected = 0
    for resource_type in registry.resource_types():
        plans = {p.code for p in extractor.plans(resource_type)}
        for code, definition in registry.for_type(resource_type).items():
            if definition.type == "special" or definition.expression is None:
                continue
            if code in ("_id", "_lastUpdated"):
                continue
            expected += 1
            assert code in plans, (resource_type, code, definition.expression)
    stats = extractor.compile_stats()
    assert stats["fast"] + stats["fallback"] == expected
    # Patient.deceased.exists() and ... != false has a hand-written getter (below).
    assert stats["fallback"] == 0, stats


@pytest.mark.parametrize(
    "deceased",
    [
        {},
        {"deceasedBoolean": True},
        {"deceasedBoolean": False},
        {"deceasedBoolean": None},
        {"deceasedDateTime": "2020-01-01"},
        {"deceasedDateTime": "2020-01-01T10:00:00Z"},
        {"deceasedDateTime": None},
        {"_deceasedBoolean": {"extension": []}},
        {"_deceasedDateTime": {"extension": []}},
        {"deceasedBoolean": True, "deceasedDateTime": "2020"},
        {"deceasedBoolean": "true"},
        {"deceasedString": "x"},
    ],
)
def test_patient_deceased_gives_what_fhirpath_gives(deceased: dict[str, Any]) -> None:
    """Patient's ``deceased`` expression, compiled by hand, answers as fhirpathpy does."""
    expression = "Patient.deceased.exists() and Patient.deceased != false"
    patient = {"resourceType": "Patient", "id": "p", "gender": "other", **deceased}
    compiled = compile_expression(expression, "Patient")
    assert compiled.fast
    expected = compile_fallback(expression)(patient)
    assert compiled.get(patient) == expected
    assert [type(v) for v in compiled.get(patient)] == [type(v) for v in expected]


def test_composite_component_on_the_resource(extractor: Extractor) -> None:
    sequence = {
        "resourceType": "MolecularSequence",
        "id": "m1",
        "coordinateSystem": 0,
        "referenceSeq": {"chromosome": {"coding": [{"code": "1"}]}},
        "variant": [{"start": 10, "end": 12}, {"start": 20, "end": 21}],
    }
    rows = extractor.extract(sequence)
    found = [
        orjson.loads(r["components"])
        for r in values(rows, "composite", "chromosome-variant-coordinate")
    ]
    assert [(c[0]["code"], c[1]["value"], c[2]["value"]) for c in found] == [
        ("1", 10.0, 12.0),
        ("1", 20.0, 21.0),
    ]


def test_runtime_parameter_is_extracted() -> None:
    registry = default_registry()
    extractor = Extractor(registry)
    patient = {
        **PATIENT,
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                "valueAddress": {"city": "Lyon", "country": "FR"},
            }
        ],
    }
    assert "birthplace" not in {r["param"] for r in extractor.extract(patient).get("string", [])}
    registry.add(
        {
            "resourceType": "SearchParameter",
            "url": "http://example.org/SearchParameter/birthplace",
            "code": "birthplace",
            "base": ["Patient"],
            "type": "string",
            "status": "active",
            "expression": "Patient.extension('http://hl7.org/fhir/StructureDefinition/patient-birthPlace').value.ofType(Address)",
        }
    )
    rows = extractor.extract(patient)
    assert {r["value"] for r in values(rows, "string", "birthplace")} == {"lyon", "fr"}


def test_broken_value_does_not_fail_the_write(extractor: Extractor) -> None:
    odd = {
        "resourceType": "Observation",
        "id": "odd",
        "code": "not-a-concept",
        "effectiveDateTime": "yesterday",
        "valueQuantity": {"value": "abc"},
        "subject": 5,
    }
    rows = extractor.extract(odd)
    assert values(rows, "token", "code") == [
        {"system": None, "code": "not-a-concept", "text": None}
    ]
    assert "date" not in rows and "quantity" not in rows
