"""The analysis as a Celery task: a real worker process (Redis broker) reads the pixels
through the SDK from the archive it shares with the hub and writes the preliminary report."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fhirhub.adapters.dicom.archive import archive_for
from fhirhub.plugins.imaging_ai import synthetic
from fhirhub.plugins.imaging_ai.runs import run_store
from fhirhub.sdk import SYSTEM, acting_as, match, read, store_dicom_instance
from tests.core.test_celery import broker_hub
from tests.plugins.imaging_ai.helpers import phantom_study

pytestmark = pytest.mark.slow
BROKER = "redis://127.0.0.1:6379/12"


@pytest.fixture
def worker(sqlite_url: str, tmp_path: Path) -> Iterator[str]:
    queue = f"fhirhub-imaging-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "FHIRHUB_DB": sqlite_url,
        "FHIRHUB_BROKER": BROKER,
        "FHIRHUB_BROKER_QUEUE": queue,
        "FHIRHUB_DATA_DIR": str(tmp_path),
        "FHIRHUB_LISTENERS": "off",
    }
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "fhirhub.core.celery_app",
                "worker",
                "--pool=solo",
                "-Q",
                queue,
                "-n",
                f"{queue}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel=INFO",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while b"ready" not in log_path.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log_path.read_text())
            time.sleep(0.2)
        yield queue
        process.terminate()
        process.wait(timeout=30)


def test_analysis_runs_on_a_celery_worker(worker: str, sqlite_url: str, tmp_path: Path) -> None:
    hub = broker_hub(BROKER, worker, sqlite_url, tmp_path)
    try:
        datasets = phantom_study(2)
        with acting_as(SYSTEM):
            for ds in datasets:
                store_dicom_instance(hub, synthetic.part10(ds))
            criteria = f"identifier=urn:dicom:uid|urn:oid:{datasets[0].StudyInstanceUID}"
            (study_id,) = match(hub, "ImagingStudy", criteria)
        assert hub.tasks is not None
        (run_id,) = hub.tasks.submit("imaging_ai.analyse", "", study_id).result(timeout=120)
        (run,) = run_store(hub).list(None, study_id=study_id)
        assert run.id == run_id and run.status == "done", run.reason
        with acting_as(SYSTEM):
            assert read(hub, "DiagnosticReport", str(run.report))["status"] == "preliminary"
    finally:
        archive_for(hub).close()
        hub.close()
