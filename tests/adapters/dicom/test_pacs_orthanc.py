"""fhirhub as a client of a real PACS: Debian's Orthanc on loopback, loaded with pydicom's test
files through its own DICOM port, then queried and retrieved by $pacs-query / $pacs-retrieve."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from fastapi.testclient import TestClient
from pynetdicom import AE

from fhirhub.adapters.dicom.config import DicomConfig
from fhirhub.core.hub import build_hub
from tests.adapters.dicom.conftest import NODE_AET, dicomdir_files, free_port, node_settings

pytestmark = pytest.mark.slow
ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"


class Orthanc:
    def __init__(self, root: Path, fhirhub_port: int) -> None:
        self.http_port, self.dicom_port = free_port(), free_port()
        self.aet = "ORTHANC"
        config = {
            "Name": "fhirhub-test-pacs",
            "StorageDirectory": str(root / "storage"),
            "IndexDirectory": str(root / "storage"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomModalities": {"fhirhub": [NODE_AET, "127.0.0.1", fhirhub_port]},
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True,
            "DicomAlwaysAllowMove": True,
            "DicomCheckModalityHost": False,
            "TcpNoDelay": True,
            "Plugins": [],
        }
        self.config = root / "orthanc.json"
        self.config.write_text(json.dumps(config))
        self.log = open(root / "orthanc.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [ORTHANC, str(self.config)], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{self.http_port}/system", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("Orthanc did not start: " + (root / "orthanc.log").read_text())

    def load(self, files: list[Path]) -> None:
        """C-STORE the files into Orthanc through its DICOM port (as a modality would)."""
        datasets = [pydicom.dcmread(p) for p in files]
        ae = AE(ae_title="LOADER")
        for sop_class in {str(ds.SOPClassUID) for ds in datasets}:
            ae.add_requested_context(sop_class)
        assoc = ae.associate("127.0.0.1", self.dicom_port, ae_title=self.aet)
        assert assoc.is_established
        for ds in datasets:
            assert assoc.send_c_store(ds).Status == 0
        assoc.release()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


@pytest.fixture
def pacs_setup(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, Orthanc]]:
    if not Path(ORTHANC).exists():
        pytest.skip("Orthanc is not installed (tools/install_system_deps.sh)")
    node_port = free_port()
    orthanc = Orthanc(tmp_path, node_port)
    try:
        orthanc.load(dicomdir_files())
        settings = node_settings(
            sqlite_url,
            tmp_path / "hub",
            pacs={"aet": orthanc.aet, "host": "127.0.0.1", "port": orthanc.dicom_port},
            allowed_aes=[orthanc.aet],  # it sends the C-MOVE's instances to the listener
            port=str(node_port),
        )
        assert DicomConfig.from_settings(settings).port == node_port
        from fhirhub.core.http.app import create_app

        hub = build_hub(settings)
        with TestClient(create_app(hub=hub)) as client:
            yield client, orthanc
        hub.store.engine.dispose()
    finally:
        orthanc.stop()


def test_query_and_retrieve_from_orthanc(pacs_setup: tuple[TestClient, Orthanc]) -> None:
    client, _orthanc = pacs_setup
    found = client.get("/fhir/$pacs-query", params={"patient": "98890234"})
    assert found.status_code == 200, found.text
    studies = [
        {part["name"]: part.get("valueString", part.get("valueInteger")) for part in p["part"]}
        for p in found.json()["parameter"]
    ]
    assert len(studies) == 4  # one CT and three MR studies in dicomdirtests
    assert sum(s["number-of-instances"] for s in studies) == 24
    uids = [s["study"] for s in studies]

    moved = client.post(
        "/fhir/$pacs-retrieve",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "study", "valueString": uids[0]}],
        },
    )
    assert moved.status_code == 200, moved.text
    result = {p["name"]: p for p in moved.json()["parameter"]}
    assert result["failed"]["valueInteger"] == 0
    reference = result["imagingStudy"]["valueReference"]["reference"]
    study = client.get(f"/fhir/{reference}").json()
    expected = next(s for s in studies if s["study"] == uids[0])
    assert study["numberOfInstances"] == expected["number-of-instances"]

    got = client.post(
        "/fhir/$pacs-retrieve",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "study", "valueString": uids[1]},
                {"name": "method", "valueCode": "get"},
            ],
        },
    )
    assert got.status_code == 200, got.text
    result = {p["name"]: p for p in got.json()["parameter"]}
    reference = result["imagingStudy"]["valueReference"]["reference"]
    study = client.get(f"/fhir/{reference}").json()
    expected = next(s for s in studies if s["study"] == uids[1])
    assert study["numberOfInstances"] == expected["number-of-instances"]
    patients = client.get("/fhir/Patient", params={"identifier": "98890234"}).json()
    assert len(patients["entry"]) == 1  # both studies share the one Patient


def test_unreachable_pacs_is_a_502(sqlite_url: str, tmp_path: Path) -> None:
    from fhirhub.core.http.app import create_app

    settings = node_settings(
        sqlite_url,
        tmp_path,
        port="off",
        pacs={"aet": "NONE", "host": "127.0.0.1", "port": free_port()},
    )
    hub = build_hub(settings)
    with TestClient(create_app(hub=hub)) as client:
        response = client.get("/fhir/$pacs-query", params={"patient": "x"})
        assert response.status_code == 502
        assert response.json()["resourceType"] == "OperationOutcome"


def test_cli_against_orthanc(pacs_setup: tuple[TestClient, Orthanc], tmp_path: Path) -> None:
    _client, orthanc = pacs_setup
    env = {**os.environ, "FHIRHUB_DATA_DIR": str(tmp_path / "cli"), "FHIRHUB_DICOM_PORT": "off"}
    pacs = ["--host", "127.0.0.1", "--port", str(orthanc.dicom_port), "--aet", orthanc.aet]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fhirhub.core.cli", "dicom", *args, *pacs],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert cli("echo").stdout.strip() == "ok"
    found = cli("query", "--patient", "77654033")
    assert found.returncode == 0, found.stderr
    studies = [json.loads(line) for line in found.stdout.splitlines() if line.startswith("{")]
    assert len(studies) == 2
    retrieved = cli("retrieve", studies[0]["StudyInstanceUID"], "--method", "get")
    assert retrieved.returncode == 0, retrieved.stderr
    result = json.loads(retrieved.stdout.strip().splitlines()[-1])
    assert result["completed"] == studies[0]["NumberOfStudyRelatedInstances"]
    assert result["failed"] == 0 and len(result["imagingStudies"]) == 1


@pytest.fixture
def tenant_pacs(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, Orthanc]]:
    """No PACS in the plugin configuration: each Organization names its own by Endpoint."""
    if not Path(ORTHANC).exists():
        pytest.skip("Orthanc is not installed (tools/install_system_deps.sh)")
    node_port = free_port()
    orthanc = Orthanc(tmp_path, node_port)
    try:
        orthanc.load(dicomdir_files())
        settings = node_settings(
            sqlite_url,
            tmp_path / "hub",
            pacs_allowed=[f"127.0.0.1:{orthanc.dicom_port}"],  # Endpoints may name it
            port=str(node_port),
        )
        from fhirhub.core.http.app import create_app

        hub = build_hub(settings)
        with TestClient(create_app(hub=hub)) as client:
            yield client, orthanc
        hub.store.engine.dispose()
    finally:
        orthanc.stop()


def test_each_organization_queries_its_own_pacs(tenant_pacs: tuple[TestClient, Orthanc]) -> None:
    client, orthanc = tenant_pacs
    hospital = client.post(
        "/fhir/Organization", json={"resourceType": "Organization", "name": "St Elsewhere"}
    ).json()
    clinic = client.post(
        "/fhir/Organization", json={"resourceType": "Organization", "name": "No-PACS Clinic"}
    ).json()
    endpoint = {
        "resourceType": "Endpoint",
        "status": "active",
        "connectionType": {"system": "urn:fhirhub:endpoint-connection-type", "code": "dicom-dimse"},
        "payloadType": [{"text": "DICOM"}],
        "managingOrganization": {"reference": f"Organization/{hospital['id']}"},
        "address": f"dicom://{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}",
    }
    assert client.post("/fhir/Endpoint", json=endpoint).status_code == 201
    found = client.get(
        "/fhir/$pacs-query", params={"patient": "98890234", "organization": hospital["id"]}
    )
    assert found.status_code == 200, found.text
    assert len(found.json()["parameter"]) == 4
    missing = client.get(
        "/fhir/$pacs-query", params={"patient": "98890234", "organization": clinic["id"]}
    )
    assert missing.status_code == 404 and "dicom://" in missing.json()["issue"][0]["diagnostics"]
    unconfigured = client.get("/fhir/$pacs-query", params={"patient": "98890234"})
    assert unconfigured.status_code == 400
