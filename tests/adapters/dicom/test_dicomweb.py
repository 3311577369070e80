"""DICOMweb (PS3.18) through the real app: QIDO-RS, WADO-RS, rendered frames, STOW-RS."""

from __future__ import annotations

import io
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient

from fhirhub.adapters.dicom.archive import DicomArchive, archive_for
from fhirhub.adapters.dicom.dicomweb import parse_multipart
from fhirhub.core.hub import Hub, build_hub
from tests.adapters.dicom.conftest import TEST_FILES, dicomdir_files, node_settings

BASE = "/plugins/dicom/dicomweb"


@pytest.fixture
def web(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, Hub, DicomArchive]]:
    from fhirhub.core.http.app import create_app

    hub = build_hub(node_settings(sqlite_url, tmp_path, port="off"))
    with TestClient(create_app(hub=hub)) as client:
        yield client, hub, archive_for(hub)
    hub.store.engine.dispose()


def multipart(files: list[bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b"".join(
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
        for data in files
    )
    body += f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def test_stow_qido_wado(web: tuple[TestClient, Hub, DicomArchive]) -> None:
    client, _hub, _archive = web
    files = dicomdir_files()
    body, content_type = multipart([p.read_bytes() for p in files])
    stored = client.post(f"{BASE}/studies", content=body, headers={"content-type": content_type})
    assert stored.status_code == 200, stored.text
    assert len(stored.json()["00081199"]["Value"]) == len(files)

    studies = client.get(f"{BASE}/studies", params={"PatientID": "77654033"})
    assert studies.status_code == 200
    assert studies.headers["content-type"].startswith("application/dicom+json")
    assert len(studies.json()) == 2
    study = studies.json()[0]
    study_uid = study["0020000D"]["Value"][0]
    assert study["00081190"]["Value"][0].endswith(f"{BASE}/studies/{study_uid}")
    assert client.get(f"{BASE}/studies", params={"00100020": "77654033"}).json() == studies.json()
    assert client.get(f"{BASE}/studies", params={"PatientID": "nobody"}).status_code == 204
    assert client.get(f"{BASE}/studies", params={"Bogus": "1"}).status_code == 400

    series = client.get(f"{BASE}/studies/{study_uid}/series").json()
    series_uid = series[0]["0020000E"]["Value"][0]
    instances = client.get(f"{BASE}/studies/{study_uid}/series/{series_uid}/instances").json()
    sop_uid = instances[0]["00080018"]["Value"][0]

    retrieved = client.get(f"{BASE}/studies/{study_uid}")
    assert retrieved.headers["content-type"].startswith("multipart/related")
    parts = parse_multipart(retrieved.content, retrieved.headers["content-type"])
    assert len(parts) == study["00201208"]["Value"][0]
    original = {pydicom.dcmread(p).SOPInstanceUID: p.read_bytes() for p in files}
    for part in parts:
        assert part == original[pydicom.dcmread(io.BytesIO(part)).SOPInstanceUID]

    metadata = client.get(
        f"{BASE}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/metadata"
    )
    assert metadata.status_code == 200
    (item,) = metadata.json()
    assert item["00080018"]["Value"] == [sop_uid]
    assert "7FE00010" not in item  # no pixel data in metadata

    instance_url = f"{BASE}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"
    png = client.get(f"{instance_url}/rendered", headers={"accept": "image/png"})
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    jpeg = client.get(
        f"{instance_url}/frames/1/rendered",
        params={"window": "40,400"},
        headers={"accept": "image/jpeg"},
    )
    assert jpeg.status_code == 200 and jpeg.content.startswith(b"\xff\xd8")
    assert client.get(f"{instance_url}/frames/9/rendered").status_code == 400
    assert client.get(f"{BASE}/studies/1.2.3.4").status_code == 404


def test_stow_partial_failure(web: tuple[TestClient, Hub, DicomArchive]) -> None:
    client, _hub, archive = web
    body, content_type = multipart(
        [(TEST_FILES / "CT_small.dcm").read_bytes(), (TEST_FILES / "MR_truncated.dcm").read_bytes()]
    )
    response = client.post(f"{BASE}/studies", content=body, headers={"content-type": content_type})
    assert response.status_code == 202
    failed = response.json()["00081198"]["Value"]
    assert failed[0]["00081197"]["Value"] == [0xC000]
    assert archive.index.count() == 1
    body, content_type = multipart([b"not dicom"])
    assert (
        client.post(
            f"{BASE}/studies", content=body, headers={"content-type": content_type}
        ).status_code
        == 409
    )
    assert (
        client.post(
            f"{BASE}/studies", content=b"x", headers={"content-type": "application/dicom"}
        ).status_code
        == 415
    )


def test_qido_study_search_under_50ms_with_1000_studies(
    web: tuple[TestClient, Hub, DicomArchive],
) -> None:
    client, _hub, archive = web
    for n in range(1000):  # catalogue rows as C-STORE would write them (3 instances a study)
        for i in range(3):
            archive.index.upsert(
                {
                    "study_uid": f"1.2.826.0.1.3680043.8.498.{n}",
                    "series_uid": f"1.2.826.0.1.3680043.8.498.{n}.1",
                    "sop_uid": f"1.2.826.0.1.3680043.8.498.{n}.1.{i}",
                    "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
                    "patient_id": f"P{n % 400}",
                    "patient_name": f"Doe^Pat{n}",
                    "study_date": f"2024{1 + n % 12:02d}{1 + n % 28:02d}",
                    "modality": "CT",
                    "instance_number": i + 1,
                },
                transfer_syntax="1.2.840.10008.1.2.1",
                digest="0" * 64,
                size=1,
            )
    timings = []
    for _ in range(15):
        start = time.perf_counter()
        response = client.get(f"{BASE}/studies")
        timings.append(time.perf_counter() - start)
        assert response.status_code == 200 and len(response.json()) == 1000
    # The target (< 50 ms) is measured by benchmarks/dicom_store.py; here a guard an order of
    # magnitude looser, so that two loaded CI cores cannot make it flaky.
    assert statistics.median(timings) < 0.5, timings
    start = time.perf_counter()
    assert len(client.get(f"{BASE}/studies", params={"PatientName": "Doe^Pat1*"}).json()) == 111
    assert time.perf_counter() - start < 0.5


def test_dicomweb_serves_a_study_only_to_callers_who_may_see_its_imaging_study(
    sqlite_url: str, tmp_path: Path
) -> None:
    """DICOMweb reads the instance catalogue, so it must ask FHIR who may see each study:
    another tenant's clinician gets no QIDO hits and 404 from WADO (as for a missing study)."""
    from fhirhub.core.http.app import create_app
    from tests.core.test_access_isolation import HeaderAuthenticator

    settings = node_settings(sqlite_url, tmp_path, port="off").model_copy(
        update={"auth": "on", "default_tenant": "org-a"}
    )
    hub = build_hub(settings, extra_plugins=[HeaderAuthenticator()])
    try:
        with TestClient(create_app(hub=hub)) as client:
            body, content_type = multipart([(TEST_FILES / "CT_small.dcm").read_bytes()])
            super_admin = {"X-Test-Caller": "super", "content-type": content_type}
            assert client.post(f"{BASE}/studies", content=body, headers=super_admin).is_success
            assert archive_for(hub).recorder.drain()
            a, b = {"X-Test-Caller": "clinician-a"}, {"X-Test-Caller": "clinician-b"}
            studies = client.get(f"{BASE}/studies", headers=a)
            assert studies.status_code == 200 and len(studies.json()) == 1
            uid = studies.json()[0]["0020000D"]["Value"][0]
            assert client.get(f"{BASE}/studies", headers=b).status_code == 204
            assert client.get(f"{BASE}/studies/{uid}/series", headers=b).status_code == 204
            assert client.get(f"{BASE}/studies/{uid}", headers=a).status_code == 200
            assert client.get(f"{BASE}/studies/{uid}", headers=b).status_code == 404
            assert client.get(f"{BASE}/studies/{uid}/metadata", headers=b).status_code == 404
            assert client.get(f"{BASE}/studies", headers={}).status_code == 401
            # The viewer pages themselves are public shells; their data needs the token.
            assert client.get("/plugins/dicom/ui/patient/x").status_code == 200
            # STOW-RS by org-b's clinician stores for org-b: b sees it, a does not.
            mr, mr_type = multipart([(TEST_FILES / "MR_small.dcm").read_bytes()])
            stow = client.post(
                f"{BASE}/studies", content=mr, headers={**b, "content-type": mr_type}
            )
            assert stow.is_success, stow.text
            assert archive_for(hub).recorder.drain()
            assert len(client.get(f"{BASE}/studies", headers=b).json()) == 1
            assert len(client.get(f"{BASE}/studies", headers=a).json()) == 1  # still only CT
            mr_patient = client.get("/fhir/ImagingStudy", headers=b).json()["entry"]
            assert mr_patient[0]["resource"]["meta"]["security"][0]["code"] == "org-b"
    finally:
        hub.close()
