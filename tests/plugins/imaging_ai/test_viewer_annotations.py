"""The DICOM adapter's annotations JSON (what the built-in series viewer draws) for the GSPS
and the SR the imaging AI stored back: each finding's box as a closed polyline and its text on
the layer AI_FINDINGS, and the SR's planar ROI, over the image the finding came from, for the
study's tenant only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from fhirhub.plugins.imaging_ai import synthetic
from tests.plugins.imaging_ai.helpers import imaging_hub, phantom_study, study_id, wait_for_runs
from tests.security.dicom_hub import DICOMWEB, multipart

ANNOTATIONS = "/plugins/dicom/annotations"


def _boxes(client: httpx.Client, report: str) -> dict[str, set[tuple[float, ...]]]:
    """SOP Instance UID -> the outlines of the findings' boxes on it (PIXEL units)."""
    found: dict[str, set[tuple[float, ...]]] = {}
    for entry in client.get(f"/fhir/DiagnosticReport/{report}").json()["result"]:
        finding = client.get(f"/fhir/{entry['reference']}").json()
        parts = {c["code"]["coding"][0]["code"]: c["valueString"] for c in finding["component"]}
        if "bounding-box" in parts:
            x0, y0, x1, y1 = map(float, parts["bounding-box"].split())
            outline = (x0, y0, x1 + 1, y0, x1 + 1, y1 + 1, x0, y1 + 1, x0, y0)
            found.setdefault(parts["sop-instance-uid"], set()).add(outline)
    return found


def test_gsps_annotations_as_json_for_the_studys_tenant_only(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with imaging_hub(sqlite_url, tmp_path, monkeypatch, offer_threshold="0") as served:
        datasets = phantom_study(2)
        body, content_type = multipart([synthetic.part10(ds) for ds in datasets])
        with served.http("clinician-a") as a:
            stored = a.post(
                f"{DICOMWEB}/studies", content=body, headers={"content-type": content_type}
            )
            assert stored.status_code == 200, stored.text
        study_uid = str(datasets[0].StudyInstanceUID)
        series_uid = str(datasets[0].SeriesInstanceUID)
        (run,) = wait_for_runs(served, study_id(served, study_uid))
        assert run.status == "done", run.reason
        with served.http("clinician-a") as a:
            boxes = _boxes(a, run.report)
            assert boxes
            answers: dict[str, dict[str, Any]] = {}
            for ds in datasets:
                sop = str(ds.SOPInstanceUID)
                response = a.get(
                    f"{ANNOTATIONS}/studies/{study_uid}/series/{series_uid}/instances/{sop}"
                )
                assert response.status_code == 200, response.text
                answers[sop] = response.json()
        for sop, answer in answers.items():
            assert answer["image"] == sop and (answer["rows"], answer["columns"]) == (256, 256)
            if sop not in boxes:
                assert answer["presentationStates"] == answer["structuredReports"] == []
                continue
            (state,) = answer["presentationStates"]
            assert state["label"] == "AI_FINDINGS" and state["seriesNumber"] == 9903
            assert [layer["name"] for layer in state["layers"]] == ["AI_FINDINGS"]
            assert {g["type"] for g in state["graphics"]} == {"POLYLINE"}
            assert {g["units"] for g in state["graphics"]} == {"PIXEL"}
            assert {g["layer"] for g in [*state["graphics"], *state["texts"]]} == {"AI_FINDINGS"}
            drawn = {tuple(v for point in g["points"] for v in point) for g in state["graphics"]}
            assert drawn == boxes[sop]
            assert len(state["texts"]) == len(boxes[sop])
            assert all(t["text"].endswith("%") and t["anchor"] for t in state["texts"])
            # the SR measurement report places the same boxes on the image, with their groups'
            # measurements (the probability in %)
            (report,) = answer["structuredReports"]
            assert report["seriesNumber"] == 9902
            regions = {tuple(v for p in r["points"] for v in p) for r in report["regions"]}
            assert regions == boxes[sop]
            assert all(r["type"] == "POLYLINE" for r in report["regions"])
            assert all(r["text"].endswith("%") for r in report["regions"])

        # the other tenant: 404, as for the image itself; so is an image that does not exist
        sop = next(iter(boxes))
        path = f"/studies/{study_uid}/series/{series_uid}/instances/{sop}"
        with served.http("clinician-b") as b:
            assert b.get(f"{DICOMWEB}{path}/rendered").status_code == 404
            assert b.get(f"{ANNOTATIONS}{path}").status_code == 404
        with served.http("clinician-a") as a:
            assert a.get(f"{ANNOTATIONS}{path}9").status_code == 404
        with served.http(None) as anonymous:
            assert anonymous.get(f"{ANNOTATIONS}{path}").status_code == 401
