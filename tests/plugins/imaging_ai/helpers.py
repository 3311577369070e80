"""A served hub with two tenants (tests/security/dicom_hub.py) whose imaging_ai analyses a
study half a second after its last instance, and synthetic studies to send it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from fhirhub.plugins.imaging_ai import synthetic
from fhirhub.plugins.imaging_ai.runs import run_store
from fhirhub.sdk import SYSTEM, acting_as, match
from tests.security.dicom_hub import ServedHub, served_hub


@contextmanager
def imaging_hub(
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    dicom: dict[str, Any] | None = None,
    **settings: str,
) -> Iterator[ServedHub]:
    """``settings``: ``[plugin.imaging_ai]`` values (as environment strings); ``dicom``:
    ``[plugin.dicom]`` values added to the served hub's."""
    monkeypatch.setenv("FHIRHUB_IMAGING_AI_QUIET_SECONDS", "0.5")
    monkeypatch.setenv("FHIRHUB_IMAGING_AI_POLL_SECONDS", "0.2")
    for key, value in settings.items():
        monkeypatch.setenv(f"FHIRHUB_IMAGING_AI_{key.upper()}", value)
    with served_hub(sqlite_url, tmp_path / "hub", **(dicom or {})) as hub:
        yield hub


def phantom_study(
    count: int = 2,
    *,
    seed: int = 3,
    patient_id: str = "PAT-1",
    findings: tuple[bool, bool] = (True, True),
) -> list[Dataset]:
    """A DX chest study of ``count`` synthetic phantoms, the first with ``findings``."""
    rng = np.random.default_rng(seed)
    study, series = generate_uid(), generate_uid()
    items = [synthetic.phantom(rng, *findings)]
    items += [synthetic.phantom(rng, False, False) for _ in range(count - 1)]
    return [
        synthetic.to_dataset(
            item, study_uid=study, series_uid=series, instance_number=i + 1, patient_id=patient_id
        )
        for i, item in enumerate(items)
    ]


def write(folder: Path, datasets: list[Dataset]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        path.write_bytes(synthetic.part10(ds))
        paths.append(path)
    return paths


def study_id(served: ServedHub, study_uid: str) -> str:
    with acting_as(SYSTEM):
        ids = match(served.hub, "ImagingStudy", f"identifier=urn:dicom:uid|urn:oid:{study_uid}")
    assert len(ids) == 1, ids
    return ids[0]


def wait_for_runs(served: ServedHub, study: str, count: int = 1, timeout: float = 60) -> list[Any]:
    """The study's finished runs, once ``count`` of them have finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r for r in run_store(served.hub).list(None, study_id=study) if r.finished]
        if len(runs) >= count:
            return runs
        time.sleep(0.1)
    raise AssertionError(f"no finished analysis run for ImagingStudy/{study} in {timeout} s")
