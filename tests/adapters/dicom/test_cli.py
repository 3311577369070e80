"""``fhirhub dicom import`` / ``rebuild-index`` as a user runs them (a real process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.adapters.dicom.conftest import DICOMDIR_TESTS, TEST_FILES


def fhirhub(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FHIRHUB_DATA_DIR": str(data_dir), "FHIRHUB_DICOM_PORT": "off"}
    return subprocess.run(
        [sys.executable, "-m", "fhirhub.core.cli", "dicom", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_and_rebuild_index(tmp_path: Path) -> None:
    imported = fhirhub(
        tmp_path, "import", str(DICOMDIR_TESTS / "77654033"), str(TEST_FILES / "MR_truncated.dcm")
    )
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout.strip().splitlines()[-1]) == {"stored": 7, "rejected": 1}
    assert "truncated" in imported.stderr
    (tmp_path / "dicom" / "index.db").unlink()
    rebuilt = fhirhub(tmp_path, "rebuild-index")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout.strip().splitlines()[-1]) == {"indexed": 7}
