"""DICOM headers -> FHIR (imagingstudy.html#notes), checked on pydicom's test files."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from fhirhub.adapters.dicom.mapping import (
    DCM,
    DICOM_UID_SYSTEM,
    PATIENT_ID_SYSTEM,
    CurrentStudy,
    MissingAttribute,
    headers_from_dataset,
    human_name,
    issuer_system,
    merge_instance,
    new_imaging_study,
    patient_resource,
    transaction_bundle,
)
from tests.adapters.dicom.conftest import dicomdir_files


def headers(path: Path):  # noqa: ANN201
    return headers_from_dataset(pydicom.dcmread(path, stop_before_pixels=True))


def test_headers_of_ct_small(ct_small: Path) -> None:
    h = headers(ct_small)
    assert h.study_uid.startswith("1.3.6.1.4.1.5962")
    assert h.modality == "CT"
    assert h.patient_id == "1CT1"
    assert h.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"


def test_missing_study_uid_is_rejected(ct_small: Path) -> None:
    ds = pydicom.dcmread(ct_small)
    del ds.StudyInstanceUID
    with pytest.raises(MissingAttribute, match="StudyInstanceUID"):
        headers_from_dataset(ds)
    ds.StudyInstanceUID = "not a uid"
    with pytest.raises(MissingAttribute, match="not a valid UID"):
        headers_from_dataset(ds)


def test_person_name_and_issuer() -> None:
    assert human_name("Moriarty^James^^Dr") == {
        "text": "Dr James Moriarty",
        "family": "Moriarty",
        "given": ["James"],
        "prefix": ["Dr"],
    }
    assert human_name("") is None
    assert issuer_system("1.2.3.4", "x") == "urn:oid:1.2.3.4"
    assert issuer_system("http://hospital.example/mrn", "x") == "http://hospital.example/mrn"
    assert issuer_system("MAIN HOSPITAL", "x") == "urn:fhirhub:dicom:issuer:MAIN%20HOSPITAL"
    assert issuer_system("", "x") == "x"


def test_patient_identified_by_id_and_issuer(ct_small: Path) -> None:
    ds = pydicom.dcmread(ct_small, stop_before_pixels=True)
    patient = patient_resource(headers_from_dataset(ds))
    assert patient["identifier"] == [{"system": PATIENT_ID_SYSTEM, "value": "1CT1"}]
    ds.IssuerOfPatientID = "2.16.840.1.113883.19.5"
    patient = patient_resource(headers_from_dataset(ds))
    assert patient["identifier"][0]["system"] == "urn:oid:2.16.840.1.113883.19.5"
    assert patient["name"][0]["family"] == "CompressedSamples"


def test_study_accumulates_series_and_instances_in_any_order() -> None:
    files = [p for p in dicomdir_files() if "77654033" in p.parts]
    by_study: dict[str, list] = {}
    for path in files:
        h = headers(path)
        by_study.setdefault(h.study_uid, []).append(h)
    for instances in by_study.values():
        forward = new_imaging_study(instances[0], "Patient/p")
        backward = new_imaging_study(instances[0], "Patient/p")
        for h in instances:
            assert merge_instance(forward, h)
        for h in reversed(instances):
            merge_instance(backward, h)
        assert forward == backward
        assert forward["numberOfInstances"] == len(instances)
        assert forward["numberOfSeries"] == len({h.series_uid for h in instances})
        assert sum(s["numberOfInstances"] for s in forward["series"]) == len(instances)
        for h in instances:  # idempotent
            assert not merge_instance(forward, h)
    cr = next(v for v in by_study.values() if v[0].modality == "CR")
    study = new_imaging_study(cr[0], "Patient/p")
    merge_instance(study, cr[0])
    series = study["series"][0]
    assert series["modality"] == {"system": DCM, "code": "CR"}
    assert series["bodySite"]["code"] == "122494005"  # CSPINE
    assert series["instance"][0]["sopClass"]["code"] == "urn:oid:1.2.840.10008.5.1.4.1.1.1"


def test_first_instance_bundle_creates_everything_conditionally() -> None:
    path = next(p for p in dicomdir_files() if "CR1" in p.parts)
    h = headers(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    ds.ReferringPhysicianName = "Watson^John"
    ds.AccessionNumber = "ACC-1"
    h = headers_from_dataset(ds)
    bundle = transaction_bundle(h, None, "http://hub.example/dicomweb")
    assert bundle is not None and bundle["type"] == "transaction"
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds == [
        "Patient",
        "Practitioner",
        "Endpoint",
        "ServiceRequest",
        "ImagingStudy",
        "Provenance",
    ]
    for entry in bundle["entry"][:4]:
        assert entry["request"]["method"] == "POST"
        assert entry["request"]["ifNoneExist"].startswith("identifier=")
    study_entry = bundle["entry"][-2]
    # The Provenance names everything written and the SOP instance it came from.
    provenance = bundle["entry"][-1]["resource"]
    assert [t["reference"] for t in provenance["target"]] == [
        e["fullUrl"] for e in bundle["entry"][:-1]
    ]
    assert provenance["entity"][0]["what"]["identifier"]["value"] == f"urn:oid:{h.sop_uid}"
    assert provenance["activity"]["coding"][0]["code"] == "CREATE"
    assert study_entry["request"]["method"] == "PUT"
    assert study_entry["request"]["url"] == (
        f"ImagingStudy?identifier={DICOM_UID_SYSTEM}|urn:oid:{h.study_uid}"
    )
    study = study_entry["resource"]
    assert study["subject"]["reference"] == bundle["entry"][0]["fullUrl"]
    assert study["referrer"]["reference"] == bundle["entry"][1]["fullUrl"]
    assert study["endpoint"][0]["reference"] == bundle["entry"][2]["fullUrl"]
    assert study["basedOn"][0]["reference"] == bundle["entry"][3]["fullUrl"]
    # an accession without issuer is matched within the patient only
    assert bundle["entry"][3]["request"]["ifNoneExist"].endswith(
        "&patient.identifier=" + (f"{PATIENT_ID_SYSTEM}|77654033")
    )
    assert {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{h.study_uid}"} in study["identifier"]
    assert any(
        i.get("type", {}).get("coding", [{}])[0].get("code") == "ACSN" for i in study["identifier"]
    )
    assert study["numberOfInstances"] == 1


def test_later_instance_bundle_is_a_guarded_put_or_nothing(ct_small: Path) -> None:
    h = headers(ct_small)
    study = new_imaging_study(h, "Patient/p")
    merge_instance(study, h)
    current = CurrentStudy("abc", 3, study)
    assert transaction_bundle(h, current, None) is None  # already recorded
    ds = pydicom.dcmread(ct_small, stop_before_pixels=True)
    ds.SOPInstanceUID = ds.SOPInstanceUID + ".1"
    bundle = transaction_bundle(headers_from_dataset(ds), current, None)
    assert bundle is not None
    entry, provenance = bundle["entry"]
    assert entry["request"] == {"method": "PUT", "url": "ImagingStudy/abc", "ifMatch": 'W/"3"'}
    assert provenance["resource"]["target"] == [{"reference": "ImagingStudy/abc"}]
    assert provenance["resource"]["activity"]["coding"][0]["code"] == "UPDATE"
    assert entry["resource"]["numberOfInstances"] == 2
    assert study["numberOfInstances"] == 1  # the current study is not modified


def test_study_without_patient_id_gets_its_own_patient() -> None:
    ds = Dataset()
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = "1.2.3.1"
    ds.SOPInstanceUID = "1.2.3.1.1"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    patient = patient_resource(headers_from_dataset(ds))
    assert patient["identifier"][0]["value"] == "1.2.3"
