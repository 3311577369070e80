"""Test data for the DICOM adapter: pydicom's own test files (shipped in the wheel)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from fhirhub.adapters.dicom.archive import DicomArchive, archive_for
from fhirhub.adapters.dicom.config import DicomConfig
from fhirhub.adapters.dicom.scp import DicomNode
from fhirhub.core.hub import Hub, build_hub
from fhirhub.core.settings import Settings

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


# -- a hub with the DICOM node listening on a free port -----------------------------------------


NODE_AET = "FHIRHUB"
CLIENT_AET = "TESTSCU"
MOVE_AET = "MOVESCU"


@dataclass
class RunningNode:
    hub: Hub
    archive: DicomArchive
    node: DicomNode
    port: int
    move_port: int
    data_dir: Path


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def node_settings(db: str, data_dir: Path, **dicom: object) -> Settings:
    return Settings(
        db=db,
        data_dir=data_dir,
        dicom_port="0",
        dicom_aet=NODE_AET,
        plugin_config={"dicom": dict(dicom)},
    )  # type: ignore[call-arg]


@pytest.fixture
def running_node(sqlite_url: str, tmp_path: Path) -> Iterator[RunningNode]:
    """A real hub (SQLite) and its DICOM node on 127.0.0.1, accepting CLIENT_AET and
    MOVE_AET, with MOVE_AET a C-MOVE destination on a free port."""
    move_port = free_port()
    settings = node_settings(
        sqlite_url,
        tmp_path,
        allowed_aes=[CLIENT_AET, MOVE_AET, "STORESCU", "FINDSCU", "GETSCU", "ECHOSCU"],
        destinations={MOVE_AET: f"127.0.0.1:{move_port}"},
    )
    hub = build_hub(settings)
    archive = archive_for(hub)
    node = DicomNode(archive, DicomConfig.from_settings(settings))
    port = node.start(host="127.0.0.1", port=0)
    yield RunningNode(hub, archive, node, port, move_port, tmp_path)
    node.stop()
    archive.close()
    hub.store.engine.dispose()


def need_dcmtk() -> None:
    if shutil.which("storescu") is None:
        pytest.skip("dcmtk is not installed (tools/install_system_deps.sh)")
