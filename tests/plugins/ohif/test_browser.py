"""The OHIF Viewer in Chromium against a served hub with authentication on and two tenants:
the study list shows the signed-in user's tenant's study only, a file uploaded in OHIF's
dialog is stored by STOW-RS for that tenant and listed, its series loads (pixels drawn
from WADO-RS frames), the imaging AI's SEG is listed and its SR measurement report is
drawn over the image.
Screenshots go to ``tests/artifacts/ohif/``.

Needs the viewer installed (``make ohif``, which needs npm): skipped otherwise, and a failure
on CI where npm is present (``make test`` installs it first).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest

from fhirhub.plugins.imaging_ai import synthetic
from fhirhub.plugins.ohif.install import DIST, installed
from tests.adapters.dicom.conftest import TEST_FILES
from tests.conftest import REPO, LiveServer
from tests.plugins.imaging_ai.helpers import phantom_study
from tests.plugins.security.conftest import PASSWORD
from tests.security.dicom_hub import multipart
from tests.ui_shell.test_browser import CHROMIUM, require_browser

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui_browser")]
ARTIFACTS = REPO / "tests" / "artifacts" / "ohif"
REPORTS = "urn:fhirhub:imaging-ai|report"
#: OHIF loads 20-30 MB of scripts and compiles its codecs: slow on a loaded machine.
TIMEOUT_MS = 120_000
#: Software WebGL (no GPU in CI): cornerstone draws with WebGL when it has it.
ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]


def require_viewer() -> None:
    if installed(DIST) is not None:
        return
    reason = (
        "the OHIF Viewer is not installed: npm is missing"
        if shutil.which("npm") is None
        else f"the OHIF Viewer is not installed in {DIST}: run make ohif"
    )
    if os.environ.get("CI") and shutil.which("npm"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def server(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    """Study A stored by STOW-RS for hospital-a and analysed (report, SEG) while a first
    server runs with authentication off; study B stored for hospital-b through the SDK; then
    a server with authentication on, where dr.grey is a clinician of hospital-a."""
    require_viewer()
    from fhirhub.core.hub import build_hub
    from fhirhub.core.settings import Settings
    from fhirhub.plugins.security.state import security
    from fhirhub.plugins.security.tenants import create_tenant
    from fhirhub.plugins.security.users import create_user
    from fhirhub.sdk import acting_as, store_dicom_instance, system_for

    env = {
        "FHIRHUB_HL7_PORT": "off",
        "FHIRHUB_DEFAULT_TENANT": "hospital-a",
        "FHIRHUB_IMAGING_AI_QUIET_SECONDS": "0.5",
        "FHIRHUB_IMAGING_AI_POLL_SECONDS": "0.2",
        "FHIRHUB_IMAGING_AI_DEMO": "false",
    }
    study_a = phantom_study(2, patient_id="PAT-A")
    study_b = phantom_study(1, seed=9, patient_id="PAT-B")
    for ds in study_b:
        ds.PatientName = "Other^Tenant"
    loader = LiveServer(sqlite_url, tmp_path, env={**env, "FHIRHUB_AUTH": "off"}).start()
    # and a JPEG-LS MR image: its codec (WebAssembly, in a worker) must pass the viewer's CSP
    compressed = (TEST_FILES / "MR_small_jpeg_ls_lossless.dcm").read_bytes()
    body, content_type = multipart([synthetic.part10(ds) for ds in study_a] + [compressed])
    stored = httpx.post(
        f"{loader.base}/plugins/dicom/dicomweb/studies",
        content=body,
        timeout=120,
        headers={"content-type": content_type},
    )
    assert stored.status_code == 200, stored.text
    deadline = time.monotonic() + 90
    while (
        not httpx.get(f"{loader.fhir}/DiagnosticReport", params={"_tag": REPORTS})
        .json()
        .get("entry")
    ):
        assert time.monotonic() < deadline, "no preliminary report"
        time.sleep(0.2)
    patients = httpx.get(f"{loader.fhir}/Patient", params={"identifier": "PAT-A"}).json()
    patient_id = patients["entry"][0]["resource"]["id"]
    loader.stop()
    hub = build_hub(Settings(db=sqlite_url, data_dir=tmp_path, auth="on"))  # type: ignore[call-arg]
    create_tenant(hub, "hospital-a", "Hospital A")
    create_tenant(hub, "hospital-b", "Hospital B")
    create_user(security(hub), "dr.grey", role="clinician", tenant="hospital-a", password=PASSWORD)
    with acting_as(system_for("hospital-b")):
        for ds in study_b:
            store_dicom_instance(hub, synthetic.part10(ds))
    hub.close()
    live = LiveServer(sqlite_url, tmp_path, env={**env, "FHIRHUB_AUTH": "on"}).start()
    uids = {
        "a": str(study_a[0].StudyInstanceUID),
        "mr": str(pydicom.dcmread(io.BytesIO(compressed)).StudyInstanceUID),
        "b": str(study_b[0].StudyInstanceUID),
        "patient": patient_id,
    }
    yield live, uids
    live.stop()


def sign_in(page: Any, base: str) -> None:
    page.goto(f"{base}/ui/patients")
    page.wait_for_selector("input[name=username]")
    page.fill("input[name=username]", "dr.grey")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[value=approve]")
    page.wait_for_url(f"{base}/ui/patients")


def image_spread(png: bytes) -> float:
    """The standard deviation of a screenshot's grey levels: near 0 for an empty viewport."""
    from PIL import Image, ImageStat

    return float(ImageStat.Stat(Image.open(io.BytesIO(png)).convert("L")).stddev[0])


def test_study_list_series_and_segmentation(server: tuple[LiveServer, dict[str, str]]) -> None:
    live, uids = server
    playwright_api = require_browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with playwright_api() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on(
            "console",
            lambda m: (
                problems.append(m.text)
                if "Content Security Policy" in m.text or "Error Boundary" in m.text
                else None
            ),
        )
        try:
            sign_in(page, live.base)
            # the shell lists the viewer
            assert page.locator("nav.sidebar a", has_text="Study viewer (OHIF)").count() == 1

            # the patient's imaging panel links its series to OHIF
            page.goto(f"{live.base}/plugins/dicom/ui/patient/{uids['patient']}")
            link = page.locator("a.series[data-viewer=ohif]").first
            link.wait_for()
            href = link.get_attribute("href") or ""
            assert href.startswith("/plugins/ohif/viewer/viewer?StudyInstanceUIDs="), href
            assert uids["a"] in href

            # the study list: the user's tenant's study, not the other tenant's
            page.goto(f"{live.base}/plugins/ohif/viewer/")
            page.get_by_text("Synthetic chest phantom").first.wait_for()
            page.screenshot(path=str(ARTIFACTS / "01-study-list.png"))
            listed = page.locator("body").inner_text()
            assert "Synthetic, Phantom" in listed and "DX" in listed
            assert "Other, Tenant" not in listed, "another tenant's study is listed"
            assert "1-2 of 2" in listed

            # Upload: a file chosen in OHIF's dialog goes to this hub by STOW-RS with the
            # user's token, is stored for the user's tenant and then listed
            (upload,) = phantom_study(1, seed=11, patient_id="PAT-U")
            upload.PatientName = "Uploaded^ByViewer"
            upload_file = live.data_dir / "upload.dcm"
            upload_file.write_bytes(synthetic.part10(upload))
            page.get_by_text("Upload", exact=True).first.click()
            page.get_by_text("Add files").first.wait_for()
            page.screenshot(path=str(ARTIFACTS / "01-upload-dialog.png"))
            page.locator("input[type=file]").first.set_input_files(str(upload_file))
            server_log = live.data_dir / f"server-{live.port}.log"
            deadline = time.monotonic() + TIMEOUT_MS / 1000
            while (
                'POST /plugins/dicom/dicomweb/studies HTTP/1.1" 200' not in server_log.read_text()
            ):
                assert time.monotonic() < deadline, "OHIF's upload did not reach STOW-RS"
                page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "01-upload-done.png"))
            page.goto(f"{live.base}/plugins/ohif/viewer/")
            page.get_by_text("Uploaded, ByViewer").first.wait_for()
            assert "1-3 of 3" in page.locator("body").inner_text()

            # the study: its DX series drawn from WADO-RS frames, the SEG series listed
            page.goto(f"{live.base}/plugins/ohif/viewer/viewer?StudyInstanceUIDs={uids['a']}")
            viewport = page.locator("[data-viewportid] canvas").first
            viewport.wait_for()
            page.get_by_text("AI regions").first.wait_for()
            deadline = time.monotonic() + TIMEOUT_MS / 1000
            spread = 0.0
            while time.monotonic() < deadline:
                spread = image_spread(viewport.screenshot())
                if spread > 10:
                    break
                page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "02-series.png"))
            assert spread > 10, f"the viewport stayed empty (grey-level spread {spread:.1f})"
            assert page.get_by_text("SEG").count() >= 1

            # the imaging AI's SR measurement report: its regions drawn over the image, with
            # the finding's probability (OHIF cannot place the SEG on a radiograph)
            skip = page.get_by_text("Skip all")
            if skip.count():
                skip.first.click()
            page.get_by_text("AI findings").first.dblclick()
            label = page.locator("svg text", has_text="probability").first
            label.wait_for()
            assert "%" in (label.text_content() or "")
            page.screenshot(path=str(ARTIFACTS / "02-findings-overlay.png"))

            # a JPEG-LS image: decoded by the codec's WebAssembly in a web worker
            page.goto(f"{live.base}/plugins/ohif/viewer/viewer?StudyInstanceUIDs={uids['mr']}")
            viewport = page.locator("[data-viewportid] canvas").first
            viewport.wait_for()
            deadline = time.monotonic() + TIMEOUT_MS / 1000
            while time.monotonic() < deadline:
                spread = image_spread(viewport.screenshot())
                if spread > 10:
                    break
                page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "03-jpeg-ls.png"))
            assert spread > 10, f"the JPEG-LS image was not drawn (spread {spread:.1f})"

            # another tenant's study does not open: QIDO-RS finds nothing for this user
            page.goto(f"{live.base}/plugins/ohif/viewer/viewer?StudyInstanceUIDs={uids['b']}")
            page.wait_for_timeout(5000)
            page.screenshot(path=str(ARTIFACTS / "04-other-tenant.png"))
            shown = page.locator("body").inner_text()
            assert "not available" in shown and "Other, Tenant" not in shown
        finally:
            browser.close()
    log = (live.data_dir / f"server-{live.port}.log").read_text()
    assert re.search(
        rf"GET /plugins/dicom/dicomweb/studies/{uids['a']}/series/[0-9.]+/instances/[0-9.]+/frames/1 HTTP/1.1\" 200",
        log,
    )
    assert not re.search(
        rf"dicomweb/studies/{uids['b']}/series/[0-9.]+/metadata HTTP/1.1\" 200", log
    )
    assert not re.search(r"dicomweb[^\"]*\" (401|403|500)", log), "a DICOMweb request was refused"
    assert problems == [], problems
