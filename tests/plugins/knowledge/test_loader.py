"""``fhirhub knowledge load``: the real command, twice (a reload updates, never duplicates),
with the Provenance naming the source, its version and licence."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fhirhub.core.hub import build_hub
from fhirhub.plugins.knowledge.loader import source_named
from fhirhub.sdk import FhirError, search
from tests.conftest import make_settings


@pytest.mark.slow  # two `fhirhub` processes
def test_load_command_is_idempotent_and_records_provenance(sqlite_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "FHIRHUB_DATA_DIR": str(tmp_path), "FHIRHUB_AUTH": "off"}
    command = [
        sys.executable,
        "-m",
        "fhirhub.core.cli",
        "knowledge",
        "load",
        "labels",
        "--db",
        sqlite_url,
    ]
    for _ in range(2):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "67 edges loaded from labels" in done.stdout
    hub = build_hub(make_settings(sqlite_url, tmp_path, auth="off", listeners=False, plugins=""))
    try:
        effects = search(hub, "MedicinalProductUndesirableEffect", {"_count": "200"})
        assert len(effects) == 40
        provenances = search(hub, "Provenance", {"_count": "10"})
        assert len(provenances) == 2
        entity = provenances[0]["entity"][0]["what"]["display"]
        assert "CC0-1.0" in entity and "2026.12" in entity
        assert provenances[0]["policy"] == ["https://creativecommons.org/publicdomain/zero/1.0/"]
        assert len(provenances[0]["target"]) == 67
    finally:
        hub.close()


def test_unknown_sources_are_refused() -> None:
    for name in ("nonsense", "json:loads"):
        try:
            source_named(name)
        except FhirError as error:
            assert error.status == 400
        else:
            raise AssertionError(name)
