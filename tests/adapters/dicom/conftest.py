"""Test data for the DICOM adapter: pydicom's own test files (shipped in the wheel)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from minio import Minio
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
    """dcmtk honours TCP_NODELAY=1 (no Nagle stalls on loopback)."""
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
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def node_settings(db: str, data_dir: Path, **dicom: object) -> Settings:
    return Settings(
        db=db,
        data_dir=data_dir,
        plugin_config={"dicom": {"port": "0", "aet": NODE_AET, **dicom}},
    )


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


@pytest.fixture(autouse=True)
def _no_object_store_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test names its store; an exported FHIRHUB_DICOM_STORE must not redirect them."""
    from fhirhub.adapters.dicom.config import STORE_ENV

    monkeypatch.delenv(STORE_ENV, raising=False)


# -- a real S3-API server on loopback ----------------------------------------------------------

#: moto accepts any key pair; these travel in signed requests like real ones would.
S3_ACCESS_KEY = "fhirhub-test"
S3_SECRET_KEY = "s3cr3t/with+odd=chars"


@dataclass
class S3Server:
    """moto's S3 REST API server (``moto_server``) as its own process on 127.0.0.1: real HTTP,
    real SigV4-signed requests from the client library, killable to test an outage."""

    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto_server did not start listening within 30 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def client(self) -> Minio:
        """An independent client, to look at the bucket behind the hub's back."""
        return Minio(
            f"127.0.0.1:{self.port}",
            access_key=S3_ACCESS_KEY,
            secret_key=S3_SECRET_KEY,
            secure=False,
            region="us-east-1",
        )

    def new_bucket(self) -> str:
        name = f"dicom-{uuid.uuid4().hex[:12]}"
        self.client().make_bucket(name)
        return name

    def url(self, bucket: str, prefix: str = "archive", **params: str) -> str:
        """``s3://key:secret@bucket/prefix?endpoint=...``: credentials in the userinfo."""
        query = urlencode({"endpoint": self.endpoint, "region": "us-east-1", **params}, safe=":/")
        return (
            f"s3://{quote(S3_ACCESS_KEY, safe='')}:{quote(S3_SECRET_KEY, safe='')}"
            f"@{bucket}/{prefix}?{query}"
        )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One S3 server for the session; each test takes a bucket of its own."""
    server = S3Server(free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def s3_url(s3_server: S3Server) -> str:
    """An empty bucket on the shared server, as an object store URL."""
    return s3_server.url(s3_server.new_bucket())
