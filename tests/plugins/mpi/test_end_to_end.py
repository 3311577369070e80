"""End to end, as a hospital would see it: the same person arrives by HL7 (an ADT^A01 with an
MRN), by DICOM (a STOW-RS study with a PatientID) and by REST (a Patient typed at
registration, no identifier) at a real ``fhirhub serve``; the MPI makes them one Person with
three linked records, and the UI shows one chart for the whole person (Chromium)."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from tests.conftest import LiveServer
from tests.ui_shell.test_browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, require_browser

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui_browser")]

ADT_A01 = (
    "MSH|^~\\&|REGADT|GOODHOSP^1.2.3.4^ISO|FHIRHUB|HUB|20240102103000||ADT^A01^ADT_A01|E2E-1|P|2.5.1\r"
    "EVN|A01|20240102103000\r"
    "PID|1||MRN-7731^^^GOODHOSP&1.2.3.4&ISO^MR||Brightwater^Odalys||19720911|F|||"
    "3 Quay Street^^Port Ellis^^40210\r"
    "PV1|1|I|WARD2^12^B^GOODHOSP||||||||||||||||VISIT-7731\r"
)


def dicom_instance() -> bytes:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = "Brightwater^Odalys"
    ds.PatientID = "PACS-55012"
    ds.PatientBirthDate = "19720911"
    ds.PatientSex = "F"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(
        f"sqlite:///{tmp_path / 'hub.db'}",
        tmp_path,
        env={"FHIRHUB_HL7_PORT": "off", "FHIRHUB_DICOM_PORT": "off", "FHIRHUB_PLUGINS": ""},
    ).start()
    yield live
    live.stop()


def wait_for_person(fhir: str, patient_id: str, members: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = httpx.get(f"{fhir}/Person", params={"patient": f"Patient/{patient_id}"}).json()
        for entry in found.get("entry", []):
            if len(entry["resource"]["link"]) == members:
                return dict(entry["resource"])
        time.sleep(0.2)
    raise AssertionError(f"no Person with {members} records for Patient/{patient_id}")


def test_hl7_dicom_and_rest_records_become_one_person_with_one_chart(server: LiveServer) -> None:
    fhir = server.fhir
    hl7 = httpx.post(
        f"{server.base}/hl7/v2",
        content=ADT_A01.encode(),
        headers={"Content-Type": "x-application/hl7-v2+er7"},
    )
    assert hl7.status_code == 200, hl7.text
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + dicom_instance()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    stow = httpx.post(
        f"{server.base}/plugins/dicom/dicomweb/studies",
        content=body,
        headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'
        },
    )
    assert stow.status_code == 200, stow.text
    typed = httpx.post(
        f"{fhir}/Patient",
        json={
            "resourceType": "Patient",
            "name": [{"family": "Brightwater", "given": ["Odalys"]}],
            "gender": "female",
            "birthDate": "1972-09-11",
            "telecom": [{"system": "phone", "value": "555-310-7731"}],
        },
    )
    assert typed.status_code == 201, typed.text
    rest_id = typed.json()["id"]
    hl7_id = httpx.get(f"{fhir}/Patient", params={"identifier": "MRN-7731"}).json()["entry"][0][
        "resource"
    ]["id"]
    dicom_id = httpx.get(f"{fhir}/Patient", params={"identifier": "PACS-55012"}).json()["entry"][0][
        "resource"
    ]["id"]
    assert len({rest_id, hl7_id, dicom_id}) == 3  # three sources, three records

    person = wait_for_person(fhir, rest_id, 3)
    assert {link["target"]["reference"] for link in person["link"]} == {
        f"Patient/{rest_id}",
        f"Patient/{hl7_id}",
        f"Patient/{dicom_id}",
    }
    whole = httpx.get(
        f"{fhir}/Patient/{rest_id}/$everything", params={"_mdm": "true", "_count": "200"}
    ).json()
    types = {e["resource"]["resourceType"] for e in whole["entry"]}
    assert {"Patient", "Encounter", "ImagingStudy"} <= types

    sync_playwright = require_browser()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{server.base}/ui/patients/{rest_id}")
        panel = page.locator("#panel-mpi-whole-person[data-loaded=true]")
        panel.wait_for()
        text = panel.inner_text()
        # The three records (the typed one has no identifier), the DICOM study, the HL7 visit.
        assert text.count("Odalys Brightwater") == 3, text
        for expected in ("MRN-7731", "PACS-55012", "CT · 1 series", "inpatient encounter"):
            assert expected in text, text
        artifacts = Path(__file__).resolve().parents[2] / "artifacts" / "mpi"
        artifacts.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(artifacts / "whole-person-chart.png"), full_page=True)
        browser.close()
        assert errors == []
