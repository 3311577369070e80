"""``$pacs-query`` / ``$pacs-retrieve`` with two tenants over real HTTP: only admins write the
Endpoints that name a PACS, targets must be on ``[plugin.dicom] pacs_allowed``, the hub never
queries itself, and retrieved instances belong to the caller's tenant. The remote PACS is a
second hub's DICOM node (its own database and archive) on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset

from fhirhub.adapters.dicom.archive import DicomArchive, archive_for
from fhirhub.adapters.dicom.config import DicomConfig
from fhirhub.adapters.dicom.scp import DicomNode
from fhirhub.core.hub import Hub, build_hub
from fhirhub.core.settings import Settings
from tests import backends
from tests.security.dicom_hub import (
    NODE_AET,
    ServedHub,
    instance,
    part10,
    served_hub,
    storescu,
    write_files,
)

REMOTE_AET = "REMOTEPACS"


@dataclass
class RemotePacs:
    hub: Hub
    archive: DicomArchive
    node: DicomNode
    port: int
    studies: list[Dataset]

    def address(self, host: str = "127.0.0.1", aet: str = REMOTE_AET) -> str:
        return f"dicom://{aet}@{host}:{self.port}"


@pytest.fixture
def remote(sqlite_template: Path, tmp_path: Path) -> Iterator[RemotePacs]:
    """Another PACS holding two studies; it answers the hub's AE title (FHIRHUB)."""
    settings = Settings(
        db=backends.fresh_sqlite_url(sqlite_template, tmp_path / "remote.db"),
        data_dir=tmp_path / "remote",
        plugin_config={"dicom": {"port": "0", "aet": REMOTE_AET, "tenants": {NODE_AET: "*"}}},
    )
    hub = build_hub(settings)
    archive = archive_for(hub)
    studies = [
        instance("CT_small.dcm", patient_id="R-1"),
        instance("MR_small.dcm", patient_id="R-2"),
    ]
    for ds in studies:
        archive.store_part10(part10(ds))
    node = DicomNode(archive, DicomConfig.from_settings(settings))
    port = node.start(host="127.0.0.1", port=0)
    yield RemotePacs(hub, archive, node, port, studies)
    node.stop()
    archive.close()
    hub.close()


@pytest.fixture
def served(sqlite_url: str, tmp_path: Path, remote: RemotePacs) -> Iterator[ServedHub]:
    with served_hub(sqlite_url, tmp_path / "hub", pacs_allowed=[f"127.0.0.1:{remote.port}"]) as hub:
        yield hub


def endpoint(address: str, organization: str = "org-a") -> dict[str, Any]:
    return {
        "resourceType": "Endpoint",
        "status": "active",
        "connectionType": {"system": "urn:fhirhub:endpoint-connection-type", "code": "dicom-dimse"},
        "payloadType": [{"text": "DICOM"}],
        "managingOrganization": {"reference": f"Organization/{organization}"},
        "address": address,
    }


def create_endpoint(served: ServedHub, caller: str, address: str) -> Any:
    with served.http(caller) as client:
        return client.post("/fhir/Endpoint", json=endpoint(address))


def pacs_query(served: ServedHub, caller: str, **params: str) -> Any:
    with served.http(caller) as client:
        return client.get("/fhir/$pacs-query", params={"organization": "org-a", **params})


def test_only_admins_write_endpoints(served: ServedHub, remote: RemotePacs) -> None:
    """A clinician could otherwise point the hub anywhere, its own listener included."""
    own = f"dicom://{NODE_AET}@127.0.0.1:{served.dicom_port}"
    refused = create_endpoint(served, "clinician-a", own)
    assert refused.status_code == 403, refused.text
    assert refused.json()["resourceType"] == "OperationOutcome"
    created = create_endpoint(served, "org-admin-a", remote.address())
    assert created.status_code == 201, created.text
    with served.http("clinician-a") as client:
        changed = client.put(
            f"/fhir/Endpoint/{created.json()['id']}",
            json={**created.json(), "address": own},
        )
    assert changed.status_code == 403


def test_the_hub_never_queries_itself(sqlite_url: str, tmp_path: Path) -> None:
    """Even with its own address on the allow-list and under another AE title: refused, and
    the other tenant's study is not returned."""
    with served_hub(sqlite_url, tmp_path, pacs_allowed=["127.0.0.1", "localhost"]) as served:
        ct = instance("CT_small.dcm", patient_id="PAT-B")
        assert storescu(served, "CT_B", write_files(tmp_path / "b", [ct])).returncode == 0
        for address in (
            f"dicom://{NODE_AET}@127.0.0.1:{served.dicom_port}",
            f"dicom://OTHER@127.0.0.1:{served.dicom_port}",
            f"dicom://OTHER@localhost:{served.dicom_port}",
        ):
            created = create_endpoint(served, "org-admin-a", address)
            assert created.status_code == 201, created.text
            found = pacs_query(served, "clinician-a", patient="*")
            assert found.status_code == 403, (address, found.text)
            assert "itself" in found.json()["issue"][0]["diagnostics"]
            with served.http("org-admin-a") as client:
                client.delete(f"/fhir/Endpoint/{created.json()['id']}")


def test_a_target_off_the_allow_list_is_refused(served: ServedHub, remote: RemotePacs) -> None:
    assert (
        create_endpoint(served, "org-admin-a", remote.address(host="localhost")).status_code == 201
    )
    found = pacs_query(served, "clinician-a", patient="*")
    assert found.status_code == 403, found.text
    assert "pacs_allowed" in found.json()["issue"][0]["diagnostics"]


def test_an_allowed_pacs_is_queried_and_retrieved_into_the_callers_tenant(
    served: ServedHub, remote: RemotePacs
) -> None:
    assert create_endpoint(served, "org-admin-a", remote.address()).status_code == 201
    found = pacs_query(served, "clinician-a", patient="R-1")
    assert found.status_code == 200, found.text
    (study,) = [
        part["valueString"]
        for match in found.json()["parameter"]
        for part in match["part"]
        if part["name"] == "study"
    ]
    assert study == str(remote.studies[0].StudyInstanceUID)
    # org-b's clinician cannot use org-a's Endpoint
    assert pacs_query(served, "clinician-b", patient="R-1").status_code == 404

    with served.http("clinician-a") as client:
        retrieved = client.post(
            "/fhir/$pacs-retrieve",
            json={
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "organization", "valueString": "org-a"},
                    {"name": "study", "valueString": study},
                    {"name": "method", "valueCode": "get"},
                ],
            },
        )
    assert retrieved.status_code == 200, retrieved.text
    assert served.dicomweb("clinician-a", f"/studies/{study}/metadata").status_code == 200
    assert served.dicomweb("clinician-b", f"/studies/{study}/metadata").status_code == 404
    imaging = next(p for p in retrieved.json()["parameter"] if p["name"] == "imagingStudy")
    with served.http("clinician-a") as client:
        read = client.get(f"/fhir/{imaging['valueReference']['reference']}")
    assert read.status_code == 200 and read.json()["meta"]["security"][0]["code"] == "org-a"
