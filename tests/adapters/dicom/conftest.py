"""Test data for the DICOM adapter: pydicom's own test files (shipped in the wheel)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

TEST_FILES = Path(str(get_testdata_file("CT_small.dcm"))).parent
DICOMDIR_TESTS = TEST_FILES / "dicomdirtests"


def dicomdir_files() -> list[Path]:
    """The dicomdirtests tree: 3 patients, several studies and series (CT, MR, CR)."""
    return sorted(
        p
        for p in DICOMDIR_TESTS.rglob("*")
        if p.is_file() and not p.name.startswith(("DICOMDIR", "README"))
    )


@pytest.fixture
def ct_small() -> Path:
    return TEST_FILES / "CT_small.dcm"


@pytest.fixture
def dicomdir() -> list[Path]:
    return dicomdir_files()


def dcmtk_env() -> dict[str, str]:
    """dcmtk honours TCP_NODELAY=1 (DESIGN.md, network listeners)."""
    return {**os.environ, "TCP_NODELAY": "1"}
