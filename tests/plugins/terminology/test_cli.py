"""``fhirhub terminology load`` as users run it (a subprocess), then the loaded version read
back through a hub on the same database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fhirhub.plugins.terminology.store import find_version, list_versions
from fhirhub.sdk import PluginDatabase, command_hub

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("terminology")]

ICD = "http://hl7.org/fhir/sid/icd-10-cm"


def test_load_command_with_a_cms_csv(tmp_path: Path) -> None:
    csv = tmp_path / "icd10cm-codes-2024.csv"
    csv.write_text(
        "CODE,SHORT DESCRIPTION,LONG DESCRIPTION\n"
        "E119,T2DM,Type 2 diabetes mellitus without complications\n"
        'A0100,Typhoid,"Typhoid fever, unspecified"\n'
    )
    db = f"sqlite:///{tmp_path / 'hub.db'}"
    env = {**os.environ, "FHIRHUB_DATA_DIR": str(tmp_path), "FHIRHUB_AUTH": "off"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fhirhub.core.cli",
            "terminology",
            "load",
            "icd10cm",
            "--csv",
            str(csv),
            "--db",
            db,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "version 2024: 4 concepts" in done.stdout  # two codes and their two categories
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "fhirhub.core.cli",
            "terminology",
            "load",
            "icd10cm",
            "--csv",
            str(tmp_path / "none.csv"),
            "--db",
            db,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert bad.returncode != 0
    os.environ.setdefault("FHIRHUB_DATA_DIR", str(tmp_path))
    with command_hub(db=db, data_dir=tmp_path) as hub:
        with PluginDatabase(hub).read() as conn:
            version = find_version(conn, ICD)
            assert version is not None and version.version == "2024"
            assert [v.version for v in list_versions(conn) if v.url == ICD] == ["2024"]
