"""The DICOM adapter's built-in series viewer in Chromium, on a study the imaging AI analysed:
the GSPS's boxes and texts and the SR's regions drawn over the image (an SVG over the frame,
in the image's pixel coordinates), listed with their presentation state and layer, and hidden
by the toggle.
Screenshots go to ``tests/artifacts/imaging_ai/``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fhirhub.plugins.imaging_ai import synthetic
from tests.conftest import REPO, LiveServer
from tests.plugins.imaging_ai.helpers import phantom_study
from tests.plugins.security.conftest import PASSWORD
from tests.security.dicom_hub import multipart
from tests.ui_shell.test_browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, require_browser

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui_browser")]
ARTIFACTS = REPO / "tests" / "artifacts" / "imaging_ai"
REPORTS = "urn:fhirhub:imaging-ai|report"


@dataclass
class Analysed:
    server: LiveServer
    study: str
    series: str
    #: (polylines, texts) the GSPS draws and the SR's regions over each image of the series,
    #: in instance order
    drawn: list[tuple[int, int, int]]


@pytest.fixture
def analysed(sqlite_url: str, tmp_path: Path) -> Iterator[Analysed]:
    """A study stored by STOW-RS and analysed while a first server runs with authentication
    off (for the default tenant hospital-a); the browser then talks to a second one with
    authentication on, as clinician dr.grey of hospital-a."""
    from fhirhub.core.hub import build_hub
    from fhirhub.core.settings import Settings
    from fhirhub.plugins.security.state import security
    from fhirhub.plugins.security.tenants import create_tenant
    from fhirhub.plugins.security.users import create_user

    env = {
        "FHIRHUB_HL7_PORT": "off",
        "FHIRHUB_DICOM_PORT": "off",
        "FHIRHUB_DEFAULT_TENANT": "hospital-a",
        "FHIRHUB_PLUGINS": "-ohif",  # the built-in viewer, as tests/adapters/dicom does
        "FHIRHUB_IMAGING_AI_QUIET_SECONDS": "0.5",
        "FHIRHUB_IMAGING_AI_POLL_SECONDS": "0.2",
        "FHIRHUB_IMAGING_AI_OFFER_THRESHOLD": "0",
    }
    loader = LiveServer(sqlite_url, tmp_path, env={**env, "FHIRHUB_AUTH": "off"}).start()
    datasets = phantom_study(2)
    body, content_type = multipart([synthetic.part10(ds) for ds in datasets])
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
    study, series = str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID)
    drawn: list[tuple[int, int, int]] = []  # in instance order, as the viewer shows them
    deadline = time.monotonic() + 60
    while sum(polylines for polylines, _texts, _regions in drawn) == 0:
        # the GSPS is stored back after the report's transaction
        assert time.monotonic() < deadline, "no GSPS over the images"
        time.sleep(0.2)
        drawn = []
        for ds in datasets:
            answer = httpx.get(
                f"{loader.base}/plugins/dicom/annotations/studies/{study}/series/{series}"
                f"/instances/{ds.SOPInstanceUID}"
            ).json()
            states, reports = answer["presentationStates"], answer["structuredReports"]
            drawn.append(
                (
                    sum(len(p["graphics"]) for p in states),
                    sum(len(p["texts"]) for p in states),
                    sum(len(r["regions"]) for r in reports),
                )
            )
    loader.stop()
    hub = build_hub(Settings(db=sqlite_url, data_dir=tmp_path, auth="on"))  # type: ignore[call-arg]
    create_tenant(hub, "hospital-a", "Hospital A")
    create_user(security(hub), "dr.grey", role="clinician", tenant="hospital-a", password=PASSWORD)
    hub.close()
    live = LiveServer(sqlite_url, tmp_path, env={**env, "FHIRHUB_AUTH": "on"}).start()
    yield Analysed(live, study, series, drawn)
    live.stop()


def test_series_viewer_draws_the_gsps_with_a_toggle(analysed: Analysed) -> None:
    playwright_api = require_browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert len(analysed.drawn) == 2 and sum(p for p, _t, _r in analysed.drawn) >= 1
    server = analysed.server
    with playwright_api() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{server.base}/ui/patients")
        page.wait_for_selector("input[name=username]")
        page.fill("input[name=username]", "dr.grey")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[value=approve]")
        page.wait_for_url(f"{server.base}/ui/patients")
        page.goto(
            f"{server.base}/plugins/dicom/ui/viewer?study={analysed.study}&series={analysed.series}"
        )
        page.wait_for_function("() => document.getElementById('frame').naturalWidth > 0")
        polylines = page.locator("#overlay g[data-presentation-state] polyline")
        texts = page.locator("#overlay g[data-presentation-state] text")
        regions = page.locator("#overlay g[data-structured-report] polyline")
        for index, (expected_polylines, expected_texts, expected_regions) in enumerate(
            analysed.drawn
        ):
            if index:
                page.keyboard.press("ArrowRight")
            # the overlay follows the image shown
            page.wait_for_function(
                f"() => document.getElementById('position').textContent === '{index + 1} / 2'"
                " && document.getElementById('overlay').dataset.image === document"
                ".getElementById('frame').dataset.sop"
            )
            assert polylines.count() == expected_polylines
            assert texts.count() == expected_texts
            assert regions.count() == expected_regions == expected_polylines
            listed = page.locator("#annotation-list li").all_text_contents()
            if not expected_polylines:
                assert page.locator("#annotations").is_hidden() and listed == []
                continue
            assert page.locator("#overlay").get_attribute("viewBox") == "0 0 256 256"
            assert all("%" in text for text in texts.all_text_contents())
            assert len(listed) == 2
            assert "AI_FINDINGS" in listed[0] and "series 9903" in listed[0]
            assert "Structured report" in listed[1] and "series 9902" in listed[1]
            # drawn over the image, scaled with it: inside the displayed frame, larger than 256
            frame = page.locator("#frame").bounding_box()
            outline = polylines.first.bounding_box()
            assert frame and outline and frame["width"] > 256
            # A box may reach the image's edge: its outline (pixel-corner coordinates, and a
            # 2 px stroke) may then pass it by up to one image pixel plus the stroke.
            slack = frame["width"] / 256 + 2
            left, top = frame["x"] - slack, frame["y"] - slack
            assert left <= outline["x"] <= frame["x"] + frame["width"] + slack - outline["width"]
            assert top <= outline["y"] <= frame["y"] + frame["height"] + slack - outline["height"]
            assert polylines.first.is_visible()
            page.screenshot(path=str(ARTIFACTS / f"viewer-gsps-{index + 1}.png"))
            page.locator("#show-annotations").uncheck()
            assert not polylines.first.is_visible() and not regions.first.is_visible()
            page.locator("#show-annotations").check()
            assert polylines.first.is_visible()
        browser.close()
