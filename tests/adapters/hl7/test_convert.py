"""Conversion of the synthetic fixtures; every resource must validate as FHIR R4 (the store's
validator, required bindings included, and fhir.resources' R4B models)."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from fhirhub.adapters.hl7.convert import ConversionError, convert
from fhirhub.adapters.hl7.parsing import parse
from fhirhub.fhir_store.validation import resource_issues
from tests.adapters.hl7.conftest import fixture


def resources(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


@pytest.mark.parametrize("name", ["adt_a01.hl7", "oru_r01.hl7", "adt_a40.hl7", "siu_s12.hl7"])
def test_every_resource_validates(name: str) -> None:
    bundle = convert(parse(fixture(name)))
    assert bundle["type"] == "transaction"
    for entry in bundle["entry"]:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        assert resource_issues(resource) == [], resource


def test_adt_a01_patient_encounter_and_clinical_segments() -> None:
    bundle = convert(parse(fixture("adt_a01.hl7")))
    (patient,) = resources(bundle, "Patient")
    assert patient["identifier"][0] == {
        "type": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                    "code": "MR",
                    "display": "Medical record number",
                }
            ]
        },
        "system": "urn:oid:1.2.3.4",
        "value": "MRN123",
    }
    assert patient["name"][0] == {"family": "Doe", "given": ["Jane", "Q"], "prefix": ["Dr."]}
    assert patient["birthDate"] == "1980-02-14"
    assert patient["gender"] == "female"
    assert patient["address"][0]["city"] == "Springfield"
    assert patient["telecom"][0]["value"] == "(217) 5550100"
    (encounter,) = resources(bundle, "Encounter")
    assert encounter["class"]["code"] == "IMP"
    assert encounter["status"] == "in-progress"
    assert encounter["period"] == {"start": "2024-01-02T10:15:00+01:00"}
    assert encounter["identifier"][0]["value"] == "VN-555"
    assert resources(bundle, "AllergyIntolerance")[0]["criticality"] == "high"
    assert resources(bundle, "Condition")[0]["code"]["coding"][0]["code"] == "J18.9"
    assert resources(bundle, "RelatedPerson")[0]["relationship"][0]["coding"][0]["code"] == "SPO"
    # ADT owns demographics: the Patient is a conditional update on its identifier
    entry = next(e for e in bundle["entry"] if e["resource"] is patient)
    assert entry["request"] == {"method": "PUT", "url": "Patient?identifier=urn:oid:1.2.3.4|MRN123"}


def test_oru_observations_values_units_ranges_interpretation() -> None:
    bundle = convert(parse(fixture("oru_r01.hl7")))
    observations = resources(bundle, "Observation")
    cholesterol = observations[0]
    assert cholesterol["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "2093-3",
        "display": "Cholesterol [Mass/volume] in Serum or Plasma",
    }
    assert cholesterol["valueQuantity"] == {
        "value": 212,
        "unit": "mg/dL",
        "system": "http://unitsofmeasure.org",
        "code": "mg/dL",
    }
    assert cholesterol["interpretation"][0]["coding"][0]["code"] == "H"
    assert cholesterol["referenceRange"] == [{"text": "<200"}]
    triglyceride = observations[1]
    assert triglyceride["valueString"] == "1.5e"  # not a number: kept as text, not dropped
    assert triglyceride["referenceRange"][0]["low"]["value"] == 0.5
    assert observations[3]["valueCodeableConcept"]["coding"][0]["code"] == "YEL"
    (report,) = resources(bundle, "DiagnosticReport")
    assert report["status"] == "final"
    assert len(report["result"]) == 4
    assert report["identifier"][0]["value"] == "FL-88"
    # a result message must not overwrite demographics: conditional create only
    entry = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    assert entry["request"]["method"] == "POST"
    assert entry["request"]["ifNoneExist"] == "identifier=urn:oid:1.2.3.4|MRN123"


def test_a40_merge_links_both_patients() -> None:
    bundle = convert(parse(fixture("adt_a40.hl7")))
    survivor, prior = resources(bundle, "Patient")
    assert prior["active"] is False
    assert prior["link"][0]["type"] == "replaced-by"
    assert survivor["link"][0]["type"] == "replaces"
    urls = {
        e["resource"]["identifier"][0]["value"]: e["fullUrl"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Patient"
    }
    assert prior["link"][0]["other"]["reference"] == urls["MRN123"]
    assert survivor["link"][0]["other"]["reference"] == urls["MRN-OLD-9"]


def test_siu_appointment() -> None:
    (appointment,) = resources(convert(parse(fixture("siu_s12.hl7"))), "Appointment")
    assert appointment["status"] == "booked"
    assert appointment["start"] == "2024-01-10T10:00:00+01:00"
    assert appointment["minutesDuration"] == 30
    assert len(appointment["participant"]) == 3


def test_provenance_points_at_the_stored_source_bytes() -> None:
    import base64

    raw = fixture("adt_a01.hl7")
    bundle = convert(parse(raw))
    (binary,) = resources(bundle, "Binary")
    (provenance,) = resources(bundle, "Provenance")
    assert base64.b64decode(binary["data"]) == raw
    assert binary["contentType"] == "x-application/hl7-v2+er7"
    binary_url = next(e["fullUrl"] for e in bundle["entry"] if e["resource"] is binary)
    assert provenance["entity"][0]["what"]["reference"] == binary_url
    targets = {t["reference"] for t in provenance["target"]}
    patient_url = next(
        e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    assert patient_url in targets


def test_same_bytes_give_the_same_bundle_identity() -> None:
    first = convert(parse(fixture("oru_r01.hl7")))
    second = convert(parse(fixture("oru_r01.hl7")))
    assert [e["fullUrl"] for e in first["entry"]] == [e["fullUrl"] for e in second["entry"]]


def test_unsupported_type_is_rejected_with_msh9() -> None:
    with pytest.raises(ConversionError) as caught:
        convert(parse(fixture("bar_p01.hl7")))
    assert (caught.value.segment, caught.value.field, caught.value.code) == ("MSH", 9, "200")


def test_guarantor_and_insured_become_payor_and_subscriber() -> None:
    text = fixture("adt_a01.hl7").replace(b"\n", b"\r") + (
        b"GT1|1|G-77^^^GOODHOSP^GN|Doe^John||12 Main St^^Springfield^IL^62701||^WPN^PH^^^217^5550199"
        b"|19790101|M||SPO^Spouse|123-45-6789|20240101|20241231\r"
        b"GT1|2||||||||||SEL\r"
        b"IN1|1|PLAN-A^Gold|INS-1^^^NAIC|Acme Insurance|||||||||||Doe^John|SPO^Spouse|19790101"
        b"|12 Main St^^Springfield^IL^62701|||||||||||||||||||MEM-9\r"
        b"IN2|E-55^^^ACME^EI|123-45-6789||||MC-1||MCD-2\r"
    )
    bundle = convert(parse(text))
    coverages = {
        c["identifier"][0]["system"].split(":")[3]: c for c in resources(bundle, "Coverage")
    }
    people = {
        p["identifier"][0]["system"].split(":")[3]: p for p in resources(bundle, "RelatedPerson")
    }
    patient_url = next(
        e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    guarantor = people["gt1"]
    assert guarantor["name"][0]["family"] == "Doe" and guarantor["birthDate"] == "1979-01-01"
    assert guarantor["relationship"][0]["coding"][0]["code"] == "SPO"
    assert {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"}.items() <= (
        guarantor["identifier"][2].items()
    )
    self_pay = [c for c in resources(bundle, "Coverage") if c is not coverages["coverage"]]
    assert [c["type"]["coding"][0]["code"] for c in self_pay] == ["pay", "pay"]
    assert self_pay[0]["payor"][0]["reference"] != patient_url  # the spouse pays
    assert self_pay[1]["payor"] == [{"reference": patient_url}]  # GT1-11 SEL: the patient
    assert self_pay[0]["period"] == {"start": "2024-01-01", "end": "2024-12-31"}
    insured = people["insured"]
    assert [i["value"] for i in insured["identifier"][1:]] == ["E-55", "123-45-6789"]
    coverage = coverages["coverage"]
    assert coverage["subscriber"]["reference"] != patient_url
    assert {i["value"] for i in coverage["identifier"][1:]} == {"MC-1", "MCD-2"}
    for resource in resources(bundle, "Coverage") + resources(bundle, "RelatedPerson"):
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        assert resource_issues(resource) == [], resource
