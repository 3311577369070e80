"""The ``fhirhub`` command line, run as a user would (a real subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from fhirhub.core.hub import build_hub
from fhirhub.core.settings import Settings
from tests.core.fhir_samples import observation, patient

pytestmark = pytest.mark.slow


def fhirhub(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fhirhub.core.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        env={**os.environ, "FHIRHUB_DATA_DIR": str(cwd)},
    )


def test_version(tmp_path: Path) -> None:
    result = fhirhub("version", cwd=tmp_path)
    assert result.returncode == 0 and "FHIR 4.0.1" in result.stdout


def test_load_bundles_and_ndjson_then_replay(sqlite_url: str, tmp_path: Path) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:p1",
                "resource": patient(),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": observation("urn:uuid:p1"),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    (tmp_path / "bundle.json").write_bytes(orjson.dumps(bundle))
    lines = [orjson.dumps({**patient(mrn=str(i)), "id": f"nd-{i}"}) for i in range(30)]
    (tmp_path / "patients.ndjson").write_bytes(b"\n".join(lines) + b"\n")

    loaded = fhirhub(
        "load", "--db", sqlite_url, "--no-progress", "bundle.json", "patients.ndjson", cwd=tmp_path
    )
    assert loaded.returncode == 0, loaded.stderr
    assert "Loaded 32 resources" in loaded.stdout

    hub = build_hub(Settings(db=sqlite_url, data_dir=tmp_path))
    from fhirhub.core.interactions.search import search_bundle

    def patients_named() -> dict[str, object]:
        with hub.store.read() as conn:
            return orjson.loads(
                search_bundle(hub, conn, "Patient", [("family", "chalmers")], base_url="")
            )

    before = patients_named()
    assert before["total"] == 31
    replayed = fhirhub("replay", "--db", sqlite_url, cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    assert patients_named()["total"] == 31
    hub.store.engine.dispose()


def test_load_rejects_a_bad_file_and_keeps_what_was_stored(sqlite_url: str, tmp_path: Path) -> None:
    (tmp_path / "good.ndjson").write_bytes(orjson.dumps({**patient(), "id": "keep"}) + b"\n")
    (tmp_path / "bad.ndjson").write_bytes(b'{"resourceType": "Patient", "gender": "bogus"}\n')
    assert (
        fhirhub("load", "--db", sqlite_url, "--no-progress", "good.ndjson", cwd=tmp_path).returncode
        == 0
    )
    failed = fhirhub("load", "--db", sqlite_url, "--no-progress", "bad.ndjson", cwd=tmp_path)
    assert failed.returncode == 1 and "gender" in failed.stderr
    hub = build_hub(Settings(db=sqlite_url, data_dir=tmp_path))
    with hub.store.read() as conn:
        from fhirhub.core.interactions.read import read

        assert read(conn, "Patient", "keep").version_id == 1
    hub.store.engine.dispose()
