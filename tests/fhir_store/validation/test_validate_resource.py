"""validate_resource: valid R4 passes; every kind of client error is a 400 with its location."""

from __future__ import annotations

from typing import Any

import pytest

from fhirhub.fhir_store.errors import FhirError
from fhirhub.fhir_store.validation import (
    R4_RESOURCE_TYPES,
    resource_issues,
    validate_resource,
)


def patient(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
        "gender": "male",
        "birthDate": "1974-12-25",
        **extra,
    }


def observation(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/example"},
        "effectiveDateTime": "2020-03-01T10:30:00+01:00",
        "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org"},
        **extra,
    }


def failure(resource: object, expected_type: str | None = None) -> FhirError:
    with pytest.raises(FhirError) as caught:
        validate_resource(resource, expected_type=expected_type)
    assert caught.value.status == 400
    assert caught.value.outcome()["resourceType"] == "OperationOutcome"
    return caught.value


def expressions(error: FhirError) -> list[str]:
    return [e for issue in error.issues for e in issue.expression]


def test_r4_has_146_resource_types_and_no_r4b_only_ones() -> None:
    assert len(R4_RESOURCE_TYPES) == 146
    assert {"Patient", "EffectEvidenceSynthesis", "MedicinalProduct"} <= R4_RESOURCE_TYPES
    assert not {"SubscriptionTopic", "Citation", "SubscriptionStatus"} & R4_RESOURCE_TYPES


def test_valid_patient_and_observation_pass_without_id() -> None:
    validate_resource(patient(), expected_type="Patient")
    validate_resource(observation(id="obs-1.a"), expected_type="Observation")


def test_valid_bundle_with_nested_resources_passes() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
                "resource": patient(),
                "request": {"method": "POST", "url": "Patient"},
            },
            {"resource": observation(), "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    validate_resource(bundle)


def test_r4_only_resource_type_is_checked_from_the_r4_definitions() -> None:
    synthesis = {
        "resourceType": "EffectEvidenceSynthesis",
        "status": "active",
        "population": {"reference": "EvidenceVariable/p"},
        "exposure": {"reference": "EvidenceVariable/e"},
        "exposureAlternative": {"reference": "EvidenceVariable/a"},
        "outcome": {"reference": "EvidenceVariable/o"},
        "resultsByExposure": [
            {"exposureState": "exposure", "riskEvidenceSynthesis": {"reference": "R/1"}}
        ],
    }
    validate_resource(synthesis)
    broken = dict(synthesis, status="bogus", colour="red")
    del broken["outcome"]
    error = failure(broken)
    assert set(expressions(error)) == {
        "EffectEvidenceSynthesis.status",
        "EffectEvidenceSynthesis.colour",
        "EffectEvidenceSynthesis.outcome",
    }


def test_r4_extension_value_meta_is_accepted() -> None:
    validate_resource(patient(extension=[{"url": "http://x", "valueMeta": {"source": "a"}}]))


def test_server_assigned_meta_fields_are_accepted_as_sent() -> None:
    validate_resource(patient(meta={"versionId": "anything", "lastUpdated": "yesterday"}))


def test_bad_gender_code_names_the_value_set() -> None:
    error = failure(patient(gender="bogus"))
    assert expressions(error) == ["Patient.gender"]
    assert error.issues[0].code == "code-invalid"
    assert "administrative-gender" in error.issues[0].diagnostics


def test_bad_observation_status() -> None:
    error = failure(observation(status="done"))
    assert expressions(error) == ["Observation.status"]


def test_required_binding_inside_datatypes_at_any_depth() -> None:
    resource = observation(
        valueQuantity={"value": 1, "comparator": "~"},
        component=[
            {"code": {"text": "a"}, "valueQuantity": {"value": 2, "comparator": "<="}},
            {"code": {"text": "b"}, "valueQuantity": {"value": 3, "comparator": "=="}},
        ],
        contained=[patient(id="p1", telecom=[{"system": "telepathy", "value": "1"}])],
    )
    error = failure(resource)
    assert set(expressions(error)) == {
        "Observation.valueQuantity.comparator",
        "Observation.component[1].valueQuantity.comparator",
        "Observation.contained[0].telecom[0].system",
    }


def test_required_binding_on_codeable_concept() -> None:
    condition: dict[str, Any] = {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/1"},
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
    }
    validate_resource(condition)
    condition["clinicalStatus"]["coding"][0]["code"] = "sleeping"
    assert expressions(failure(condition)) == ["Condition.clinicalStatus"]


def test_unknown_element() -> None:
    error = failure(patient(favouriteColour="blue"))
    assert expressions(error) == ["Patient.favouriteColour"]
    assert error.issues[0].code == "structure"


def test_unknown_element_nested_in_backbone() -> None:
    error = failure(observation(component=[{"code": {"text": "x"}, "colour": "red"}]))
    assert expressions(error) == ["Observation.component[0].colour"]


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ({"active": "yes"}, "Patient.active"),
        ({"multipleBirthInteger": True}, "Patient.multipleBirthInteger"),
        ({"name": {"family": "x"}}, "Patient.name"),
        ({"name": [{"given": "Peter"}]}, "Patient.name[0].given"),
        ({"name": [{"family": ["x"]}]}, "Patient.name[0].family"),
        ({"photo": [{"data": "not base64!"}]}, "Patient.photo[0].data"),
        ({"managingOrganization": "Organization/1"}, "Patient.managingOrganization"),
        ({"name": []}, "Patient.name"),
        ({"name": [{}]}, "Patient.name[0]"),
        ({"active": None}, "Patient.active"),
    ],
)
def test_wrong_json_types(extra: dict[str, Any], where: str) -> None:
    assert expressions(failure(patient(**extra))) == [where]


def test_decimal_must_be_a_json_number() -> None:
    error = failure(observation(valueQuantity={"value": "72"}))
    assert expressions(error) == ["Observation.valueQuantity.value"]


@pytest.mark.parametrize("value", ["1974-13-01", "1974-02-30", "25/12/1974", "1974-1-1", ""])
def test_invalid_date(value: str) -> None:
    assert expressions(failure(patient(birthDate=value))) == ["Patient.birthDate"]


def test_invalid_instant_and_datetime() -> None:
    error = failure(observation(issued="2020-03-01", effectiveDateTime="2020-03-01T10:30"))
    assert set(expressions(error)) == {"Observation.issued", "Observation.effectiveDateTime"}


@pytest.mark.parametrize("value", ["bad id!", "a" * 65, "", "ü"])
def test_bad_id(value: str) -> None:
    assert expressions(failure(patient(id=value))) == ["Patient.id"]


def test_r4b_only_type_is_rejected_as_not_r4() -> None:
    error = failure({"resourceType": "SubscriptionTopic", "status": "active"})
    assert "R4B" in error.message and "4.0.1" in error.message
    error = failure(patient(contained=[{"resourceType": "Citation", "status": "active"}]))
    assert expressions(error) == ["Patient.contained[0]"]


def test_unknown_or_missing_resource_type() -> None:
    assert "Unknown resource type" in failure({"resourceType": "Patients"}).message
    assert "Missing resourceType" in failure({"gender": "male"}).message


def test_missing_required_element() -> None:
    resource = observation()
    del resource["code"]
    error = failure(resource)
    assert expressions(error) == ["Observation.code"]
    assert error.issues[0].code == "required"


def test_required_primitive_may_be_given_by_its_extension_only() -> None:
    resource = observation(_status={"extension": [{"url": "http://x", "valueString": "n/a"}]})
    del resource["status"]
    validate_resource(resource)


def test_resource_type_must_match_the_url() -> None:
    error = failure(patient(), expected_type="Observation")
    assert "does not match" in error.message


@pytest.mark.parametrize("body", [[patient()], "Patient", 42, None])
def test_non_object(body: object) -> None:
    assert "JSON object" in failure(body).message


def test_one_type_per_choice_element() -> None:
    error = failure(observation(valueString="72"))
    assert "Only one type of value[x]" in error.message


def test_primitive_extensions_line_up_with_their_values() -> None:
    validate_resource(
        patient(
            name=[{"given": ["Peter", None], "_given": [None, {"id": "g2"}]}],
            _birthDate={"extension": [{"url": "http://x", "valueTime": "10:00:00"}]},
        )
    )
    error = failure(patient(name=[{"given": ["Peter", None]}]))
    assert expressions(error) == ["Patient.name[0].given[1]"]
    error = failure(patient(_gender={"colour": "x"}))
    assert expressions(error) == ["Patient._gender.colour"]
    error = failure(patient(_nickname={"id": "x"}))
    assert expressions(error) == ["Patient._nickname"]


def test_errors_in_bundle_entries_carry_their_entry_path() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": patient()}, {"resource": patient(gender="bogus", foo=1)}],
    }
    error = failure(bundle)
    assert set(expressions(error)) == {
        "Bundle.entry[1].resource.gender",
        "Bundle.entry[1].resource.foo",
    }


def test_bundle_type_is_bound() -> None:
    assert expressions(failure({"resourceType": "Bundle", "type": "pile"})) == ["Bundle.type"]


def test_every_problem_is_reported_once() -> None:
    issues = resource_issues(patient(gender="x", birthDate="x", id="x y", foo=1))
    assert sorted(e for i in issues for e in i.expression) == [
        "Patient.birthDate",
        "Patient.foo",
        "Patient.gender",
        "Patient.id",
    ]
    assert all(issue.severity == "error" and issue.diagnostics for issue in issues)


def test_evidence_variable_has_its_r4_shape() -> None:
    """The source copy's snapshot is R5-shaped; the validator follows the R4 differential."""
    variable = {
        "resourceType": "EvidenceVariable",
        "status": "draft",
        "characteristic": [{"definitionCodeableConcept": {"text": "smokers"}, "exclude": False}],
    }
    validate_resource(variable)
    variable["characteristic"] = [{"definitionByCombination": {"code": "all-of"}}]
    assert set(expressions(failure(variable))) == {
        "EvidenceVariable.characteristic[0].definitionByCombination",
        "EvidenceVariable.characteristic[0].definition[x]",
    }


def test_contained_resources_do_not_nest() -> None:
    inner = patient(id="p1", contained=[patient(id="p2")])
    error = failure(observation(contained=[inner]))
    assert expressions(error) == ["Observation.contained[0].contained"]
    assert error.issues[0].code == "invariant"


def test_absurdly_deep_nesting_is_a_400_not_a_crash() -> None:
    extension: dict[str, Any] = {"url": "http://x", "valueString": "leaf"}
    for _ in range(2000):
        extension = {"url": "http://x", "extension": [extension]}
    error = failure(patient(extension=[extension]))
    assert "nested too deeply" in error.message


def test_r4b_only_elements_are_unknown_in_r4() -> None:
    extension = {"url": "http://x", "valueCodeableReference": {"concept": {"text": "x"}}}
    error = failure(patient(extension=[extension]))
    assert expressions(error) == ["Patient.extension[0].valueCodeableReference"]


def test_nested_resource_in_parameters_is_validated_by_its_type() -> None:
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "p", "resource": patient(gender="x")}],
    }
    assert expressions(failure(parameters)) == ["Parameters.parameter[0].resource.gender"]
