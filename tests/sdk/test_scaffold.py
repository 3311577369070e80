"""``fhirhub plugin new`` writes a package that installs, is discovered, and passes its tests.

The package is pip-installed into its own target folder (not the shared virtual environment,
which other test workers use at the same time) and put on ``PYTHONPATH`` for the processes
that should see it: the entry point is found exactly as for a normal install.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer

pytestmark = pytest.mark.slow


def run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_generated_plugin_installs_is_discovered_and_its_tests_pass(
    sqlite_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "FHIRHUB_HL7_PORT": "off", "FHIRHUB_DICOM_PORT": "off"}
    created = run(
        sys.executable,
        "-m",
        "fhirhub.core.cli",
        "plugin",
        "new",
        "bed-board",
        "--directory",
        str(tmp_path),
        env=env,
        cwd=tmp_path,
    )
    assert created.returncode == 0, created.stderr
    package = tmp_path / "fhirhub-bed-board"
    site = tmp_path / "site"
    installed = run(
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--target",
        str(site),
        str(package),
        env=env,
        cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stderr
    env["PYTHONPATH"] = str(site)

    listed = run(sys.executable, "-m", "fhirhub.core.cli", "plugins", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "bed-board 0.1.0 [fhirhub-bed-board] enabled" in listed.stdout
    assert "resource_committed" in listed.stdout

    server = LiveServer(sqlite_url, tmp_path, env={"PYTHONPATH": str(site)}).start()
    try:
        statement = httpx.get(f"{server.fhir}/metadata").json()
        assert "bedboard" in {op["name"] for op in statement["rest"][0]["operation"]}
        answer = httpx.get(f"{server.fhir}/$bedboard").json()
        assert answer["parameter"][0]["valueString"] == "bed-board is working"
        assert httpx.get(f"{server.base}/plugins/bed-board/status").json()["plugin"] == "bed-board"
    finally:
        server.stop()

    generated_tests = run(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        str(package / "tests"),
        env=env,
        cwd=package,
    )
    assert generated_tests.returncode == 0, generated_tests.stdout + generated_tests.stderr
    assert "3 passed" in generated_tests.stdout
