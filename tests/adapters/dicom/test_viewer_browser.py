"""The imaging views in a real browser: thumbnails in the patient chart, then the series
viewer scrolled frame by frame with CT presets — all over the public FHIR and DICOMweb APIs.
Screenshots go to ``tests/artifacts/dicom/``."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from tests.conftest import REPO, LiveServer
from tests.ui_shell.test_browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, require_browser

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui_browser")]
ARTIFACTS = REPO / "tests" / "artifacts" / "dicom"


def ct_series(count: int) -> list[bytes]:
    """``CT_small.dcm`` (real pixel data) as one series of ``count`` instances."""
    series_uid = generate_uid()
    files = []
    for number in range(1, count + 1):
        dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        dataset.SeriesInstanceUID = series_uid
        dataset.SOPInstanceUID = generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.InstanceNumber = number
        buffer = io.BytesIO()
        dataset.save_as(buffer)
        files.append(buffer.getvalue())
    return files


@pytest.fixture
def server(sqlite_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(
        sqlite_url, tmp_path, env={"FHIRHUB_DICOM_PORT": "off", "FHIRHUB_HL7_PORT": "off"}
    ).start()
    boundary = uuid.uuid4().hex
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
            for data in ct_series(3)
        )
        + f"--{boundary}--\r\n".encode()
    )
    stored = httpx.post(
        f"{live.base}/plugins/dicom/dicomweb/studies",
        content=body,
        timeout=120,
        headers={
            "content-type": f'multipart/related; type="application/dicom"; boundary={boundary}'
        },
    )
    assert stored.status_code == 200, stored.text
    yield live
    live.stop()


def test_chart_thumbnails_open_the_series_viewer(server: LiveServer) -> None:
    playwright_api = require_browser()
    study_uid = pydicom.dcmread(get_testdata_file("CT_small.dcm")).StudyInstanceUID
    studies = httpx.get(
        f"{server.fhir}/ImagingStudy", params={"identifier": f"urn:oid:{study_uid}"}
    ).json()
    ct_study = studies["entry"][0]["resource"]
    patient_id = ct_study["subject"]["reference"].split("/")[1]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{server.base}/ui/patients/{patient_id}")
        frame = page.frame_locator("iframe[title='Imaging (DICOM)']")
        thumbnail = frame.locator("a.series img").first
        thumbnail.wait_for()
        page.wait_for_function(
            "() => [...document.querySelectorAll('iframe')].some(f => { try {"
            " return [...f.contentDocument.querySelectorAll('a.series img')].some(i => i.naturalWidth > 0) }"
            " catch (e) { return false } })"
        )
        page.screenshot(path=str(ARTIFACTS / "chart-imaging.png"), full_page=True)
        frame.locator("a.series", has_text="CT").first.click()
        page.wait_for_url("**/plugins/dicom/ui/viewer?*")
        page.wait_for_function("() => document.getElementById('frame').naturalWidth > 0")
        position = page.locator("#position")
        first = position.text_content() or ""
        assert first == "1 / 3"
        page.keyboard.press("ArrowRight")
        assert position.text_content() == "2 / 3"
        assert page.locator("#presets").is_visible()
        page.locator("#presets button[data-window='bone']").click()
        page.wait_for_function(
            "() => document.getElementById('frame').src.includes('window=bone')"
            " && document.getElementById('frame').complete && document.getElementById('frame').naturalWidth > 0"
        )
        page.screenshot(path=str(ARTIFACTS / "viewer-ct-bone.png"))
        browser.close()
