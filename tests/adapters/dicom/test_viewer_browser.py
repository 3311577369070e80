"""The imaging views in a real browser: thumbnails in the patient chart, then the series
viewer scrolled frame by frame with CT presets — all over the public FHIR and DICOMweb APIs.
Screenshots go to ``tests/artifacts/dicom/``."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from tests.conftest import REPO, LiveServer
from tests.plugins.security.conftest import PASSWORD
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
    """Authentication on: a clinician of hospital-a, whose tenant owns what the DICOM node
    records (``FHIRHUB_DEFAULT_TENANT``). The series is stored through STOW-RS while a first
    server runs with auth off; the browser then talks to a second one with auth on."""
    from fhirhub.core.hub import build_hub
    from fhirhub.core.settings import Settings
    from fhirhub.plugins.security.state import security
    from fhirhub.plugins.security.tenants import create_tenant
    from fhirhub.plugins.security.users import create_user

    env = {
        "FHIRHUB_DICOM_PORT": "off",
        "FHIRHUB_HL7_PORT": "off",
        "FHIRHUB_DEFAULT_TENANT": "hospital-a",
        # the built-in viewer: with the OHIF plugin (and its viewer installed) thumbnails open
        # OHIF instead (tests/plugins/ohif)
        "FHIRHUB_PLUGINS": "-ohif",
    }
    loader = LiveServer(sqlite_url, tmp_path, env={**env, "FHIRHUB_AUTH": "off"}).start()
    boundary = uuid.uuid4().hex
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
            for data in ct_series(3)
        )
        + f"--{boundary}--\r\n".encode()
    )
    stored = httpx.post(
        f"{loader.base}/plugins/dicom/dicomweb/studies",
        content=body,
        timeout=120,
        headers={
            "content-type": f'multipart/related; type="application/dicom"; boundary={boundary}'
        },
    )
    assert stored.status_code == 200, stored.text
    study_uid = pydicom.dcmread(get_testdata_file("CT_small.dcm")).StudyInstanceUID
    deadline = time.monotonic() + 60
    while (
        not httpx.get(f"{loader.fhir}/ImagingStudy", params={"identifier": f"urn:oid:{study_uid}"})
        .json()
        .get("total")
    ):
        assert time.monotonic() < deadline, "the ImagingStudy was never recorded"
        time.sleep(0.2)
    loader.stop()
    hub = build_hub(Settings(db=sqlite_url, data_dir=tmp_path, auth="on"))  # type: ignore[call-arg]
    create_tenant(hub, "hospital-a", "Hospital A")
    create_user(security(hub), "dr.grey", role="clinician", tenant="hospital-a", password=PASSWORD)
    hub.close()
    live = LiveServer(sqlite_url, tmp_path, env={**env, "FHIRHUB_AUTH": "on"}).start()
    yield live
    live.stop()


def test_chart_thumbnails_open_the_series_viewer(server: LiveServer) -> None:
    playwright_api = require_browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert httpx.get(f"{server.fhir}/ImagingStudy").status_code == 401
    with playwright_api() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{server.base}/ui/patients")
        page.wait_for_selector("input[name=username]")
        page.fill("input[name=username]", "dr.grey")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[value=approve]")
        page.wait_for_url(f"{server.base}/ui/patients")
        page.locator("#patient-table tbody tr a").first.click()
        page.wait_for_url("**/ui/patients/*")
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
            "() => (document.getElementById('frame').dataset.shown || '').includes('window=bone')"
            " && document.getElementById('frame').complete && document.getElementById('frame').naturalWidth > 0"
        )
        page.screenshot(path=str(ARTIFACTS / "viewer-ct-bone.png"))
        browser.close()
