"""Bad input is a failed run with a reason, never a crash: a non-image SOP class, a corrupt
pixel stream, a modality the model does not take (a route naming the model explicitly), all
arriving by STOW-RS."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, generate_uid

from fhirhub.plugins.imaging_ai import synthetic
from tests.plugins.imaging_ai.helpers import imaging_hub, phantom_study, study_id, wait_for_runs
from tests.security.dicom_hub import TEST_FILES, ServedHub, multipart

BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def stow(served: ServedHub, datasets: list[pydicom.Dataset]) -> None:
    body, content_type = multipart([synthetic.part10(ds) for ds in datasets])
    with served.http("clinician-a") as a:
        response = a.post(
            "/plugins/dicom/dicomweb/studies", content=body, headers={"content-type": content_type}
        )
    assert response.status_code == 200, response.text


def failed_reason(served: ServedHub, datasets: list[pydicom.Dataset]) -> str:
    stow(served, datasets)
    (run,) = wait_for_runs(served, study_id(served, str(datasets[0].StudyInstanceUID)))
    assert run.status == "failed"
    assert run.report is None
    return str(run.reason)


def test_bad_input_makes_failed_runs(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    routes = json.dumps([{"model": "synthetic-opacity"}])
    with imaging_hub(sqlite_url, tmp_path, monkeypatch, routes=routes) as served:
        # a structured report that says it is a chest DX: no pixel data
        (sr,) = phantom_study(1)
        del sr.PixelData
        sr.SOPClassUID = sr.file_meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
        assert "no pixel data" in failed_reason(served, [sr])

        # JPEG Baseline whose stream is garbage
        (corrupt,) = phantom_study(1, seed=4)
        corrupt.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        corrupt.BitsAllocated, corrupt.BitsStored, corrupt.HighBit = 8, 8, 7
        corrupt.PixelData = encapsulate([b"\xff\xd8\xff\xe0 not a jpeg at all" * 10])
        corrupt["PixelData"].VR = "OB"
        assert "cannot be decoded" in failed_reason(served, [corrupt])

        # a CT image: the model takes DX/CR chest only
        ct = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
        ct.StudyInstanceUID, ct.SeriesInstanceUID = generate_uid(), generate_uid()
        ct.SOPInstanceUID = ct.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        assert "modality CT" in failed_reason(served, [ct])

        # and a good study still works on the same hub afterwards
        good = phantom_study(1, seed=5)
        stow(served, good)
        (run,) = wait_for_runs(served, study_id(served, str(good[0].StudyInstanceUID)))
        assert run.status == "done", run.reason


def test_default_route_ignores_studies_no_model_takes(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an explicit route a CT study is simply not analysed (no run, no report)."""
    import time

    from fhirhub.plugins.imaging_ai.runs import run_store

    with imaging_hub(sqlite_url, tmp_path, monkeypatch) as served:
        ct = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
        ct.StudyInstanceUID, ct.SeriesInstanceUID = generate_uid(), generate_uid()
        ct.SOPInstanceUID = ct.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        stow(served, [ct])
        study = study_id(served, str(ct.StudyInstanceUID))
        time.sleep(2)
        assert run_store(served.hub).list(None, study_id=study) == []
        assert np.isfinite(1.0)
