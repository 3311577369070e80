"""DICOMweb with two tenants over real HTTP: what a caller sees of the archive comes from the
archive's own record (tenant, Patient), never from a FHIR resource a caller can write; one
tenant's STOW-RS never replaces another's instance; QIDO pages only what the caller sees."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from fhirhub.adapters.dicom.dicomweb import parse_multipart
from fhirhub.sdk import search
from tests.security.dicom_hub import (
    ServedHub,
    instance,
    multipart,
    part10,
    served_hub,
    storescu,
    write_files,
)


@pytest.fixture
def served(sqlite_url: str, tmp_path: Path) -> Iterator[ServedHub]:
    with served_hub(sqlite_url, tmp_path / "hub") as hub:
        yield hub


def stow(served: ServedHub, caller: str, datasets: list[Dataset]) -> int:
    body, content_type = multipart([part10(ds) for ds in datasets])
    with served.http(caller) as client:
        response = client.post(
            "/plugins/dicom/dicomweb/studies", content=body, headers={"content-type": content_type}
        )
    assert served.archive.drain()
    return response.status_code


def imaging_study_naming(uid: str, subject: str) -> dict[str, object]:
    return {
        "resourceType": "ImagingStudy",
        "status": "available",
        "subject": {"reference": subject},
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}],
    }


def test_an_imaging_study_naming_another_tenants_study_gives_nothing(
    served: ServedHub, tmp_path: Path
) -> None:
    """org-b's clinician writes an ImagingStudy whose identifier is org-a's Study Instance
    UID: no QIDO rows, no metadata, no pixels (answered like a missing study)."""
    ct = instance("CT_small.dcm", patient_id="PAT-A")
    assert storescu(served, "CT_A", write_files(tmp_path, [ct])).returncode == 0
    uid, series, sop = str(ct.StudyInstanceUID), str(ct.SeriesInstanceUID), str(ct.SOPInstanceUID)

    with served.http("clinician-b") as b:
        patient = b.post("/fhir/Patient", json={"resourceType": "Patient"}).json()
        forged = b.post(
            "/fhir/ImagingStudy", json=imaging_study_naming(uid, f"Patient/{patient['id']}")
        )
        assert forged.status_code == 201, forged.text

    instance_path = f"/studies/{uid}/series/{series}/instances/{sop}"
    assert served.dicomweb("clinician-b", "/studies").status_code == 204
    assert served.dicomweb("clinician-b", "/studies", StudyInstanceUID=uid).status_code == 204
    assert served.dicomweb("clinician-b", f"/studies/{uid}/series").status_code == 204
    assert served.dicomweb("clinician-b", f"/studies/{uid}/instances").status_code == 204
    for path in (
        f"/studies/{uid}",
        f"/studies/{uid}/metadata",
        f"{instance_path}/metadata",
        f"{instance_path}/rendered",
        f"{instance_path}/frames/1/rendered",
    ):
        assert served.dicomweb("clinician-b", path).status_code == 404, path
        assert served.dicomweb("clinician-a", path).status_code == 200, path
    assert served.dicomweb("clinician-a", "/studies").status_code == 200


def test_stow_with_another_tenants_sop_instance_uid_never_replaces_its_instance(
    served: ServedHub,
) -> None:
    """org-b STOWs an instance carrying org-a's UIDs: org-a still gets exactly its bytes."""
    original = instance("CT_small.dcm", patient_id="PAT-A", PatientName="Alpha^Ann")
    stored_a = part10(original)
    assert stow(served, "clinician-a", [original]) == 200
    original.PatientName = "Forged^Bob"
    stored_b = part10(original)
    assert stow(served, "clinician-b", [original]) == 200

    uid = str(original.StudyInstanceUID)
    for caller, expected in (("clinician-a", stored_a), ("clinician-b", stored_b)):
        response = served.dicomweb(caller, f"/studies/{uid}")
        assert response.status_code == 200
        (part,) = parse_multipart(response.content, response.headers["content-type"])
        assert part == expected, caller
    assert served.archive.index.count() == 2


def test_qido_filters_by_tenant_before_limit_and_offset(served: ServedHub) -> None:
    """org-a has three newer studies, org-b one older: org-b's pages hold its own study
    only, at offset 0, whatever org-a has (no count or order of theirs shows through)."""
    for day in ("20240103", "20240102", "20240101"):
        assert stow(served, "clinician-a", [instance(StudyDate=day, patient_id="PAT-A")]) == 200
    own = instance(StudyDate="20200101", patient_id="PAT-B")
    assert stow(served, "clinician-b", [own]) == 200

    pages = []
    for offset in range(4):
        response = served.dicomweb("clinician-b", "/studies", limit=1, offset=offset)
        pages.append([] if response.status_code == 204 else response.json())
    assert [len(page) for page in pages] == [1, 0, 0, 0]
    assert pages[0][0]["0020000D"]["Value"] == [str(own.StudyInstanceUID)]
    # wildcard matching on a UID prefix finds nothing of org-a's either
    prefix = served.dicomweb("clinician-b", "/studies", StudyInstanceUID="1*", limit=1)
    assert [r["0020000D"]["Value"][0] for r in prefix.json()] == [str(own.StudyInstanceUID)]
    assert len(served.dicomweb("clinician-a", "/studies", limit=10).json()) == 3


def test_a_patient_app_sees_the_studies_recorded_for_its_patient_only(
    served: ServedHub, tmp_path: Path
) -> None:
    """Two patients of org-a. A patient app (with write scopes) that creates an ImagingStudy
    in its own chart naming the other patient's Study Instance UID still gets nothing of it."""
    mine = instance("CT_small.dcm", patient_id="PAT-1")
    other = instance("MR_small.dcm", patient_id="PAT-2")
    assert storescu(served, "CT_A", write_files(tmp_path, [mine, other])).returncode == 0
    (patient,) = search(
        served.hub, "Patient", [("identifier", "urn:fhirhub:dicom:patient-id|PAT-1")]
    )
    served.add_patient_caller("patient-1", "org-a", patient["id"], "patient/*.cruds")

    other_uid = str(other.StudyInstanceUID)
    with served.http("patient-1") as app:
        forged = app.post(
            "/fhir/ImagingStudy",
            json=imaging_study_naming(other_uid, f"Patient/{patient['id']}"),
        )
        assert forged.status_code == 201, forged.text

    rows = served.dicomweb("patient-1", "/studies").json()
    assert [r["0020000D"]["Value"][0] for r in rows] == [str(mine.StudyInstanceUID)]
    assert served.dicomweb("patient-1", f"/studies/{other_uid}").status_code == 404
    assert served.dicomweb("patient-1", f"/studies/{other_uid}/metadata").status_code == 404
    assert served.dicomweb("clinician-a", f"/studies/{other_uid}").status_code == 200
    # and it cannot store: the Patient would come from the file's header, not its token
    assert stow(served, "patient-1", [instance(patient_id="PAT-2")]) == 403
