"""Storing instances through the archive on both backends: FHIR resources, idempotency,
batching by study, and recovery of instances stored but not yet recorded (a crash)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification
from sqlalchemy import text

from fhirhub.adapters.dicom.archive import DicomArchive, archive_for
from fhirhub.adapters.dicom.instance_index import index_values
from fhirhub.adapters.dicom.mapping import headers_from_dataset
from fhirhub.adapters.dicom.plugin import dicom_node
from fhirhub.adapters.dicom.s3_store import S3Store
from fhirhub.core.hub import Hub, build_hub
from tests.adapters.dicom.conftest import NODE_AET, dicomdir_files, node_settings


def current(hub: Hub, resource_type: str) -> list[dict]:
    with hub.store.read() as conn:
        rows = conn.execute(
            text("SELECT content FROM resource_current WHERE resource_type = :t"),
            {"t": resource_type},
        ).fetchall()
    return [orjson.loads(row[0]) for row in rows]


def versions(hub: Hub) -> int:
    with hub.store.read() as conn:
        return int(conn.execute(text("SELECT count(*) FROM resource_version")).scalar_one())


def test_store_on_each_backend(database_url: str, tmp_path: Path) -> None:
    hub = build_hub(node_settings(database_url, tmp_path, port="off"))
    archive = archive_for(hub)
    try:
        files = dicomdir_files()
        for path in files:
            archive.store_part10(path.read_bytes(), wait=False)
        assert archive.drain()
        studies = current(hub, "ImagingStudy")
        assert sum(s["numberOfInstances"] for s in studies) == len(files)
        assert len(current(hub, "Patient")) == 3
        # accession "2" is used by two patients without an issuer: one order each
        orders = current(hub, "ServiceRequest")
        assert len(
            {(o["identifier"][0]["value"], o["subject"]["reference"]) for o in orders}
        ) == len(orders)
        before = versions(hub)
        result = archive.store_part10(files[0].read_bytes())
        assert not result.changed and versions(hub) == before
        # batched: fewer ImagingStudy versions than instances
        with hub.store.read() as conn:
            study_versions = conn.execute(
                text("SELECT count(*) FROM resource_version WHERE resource_type = 'ImagingStudy'")
            ).scalar_one()
        assert study_versions <= len(files)
    finally:
        archive.close()
        hub.store.engine.dispose()


@pytest.fixture(params=["file", "s3"])
def object_store(request: pytest.FixtureRequest) -> str:
    """The archive's store: files under the data directory, or a bucket on a real S3 server."""
    return "" if request.param == "file" else str(request.getfixturevalue("s3_url"))


def catalogue_unrecorded(archive: DicomArchive, path: Path, tenant: str = "") -> Any:
    """What a crash between the catalogue row and the FHIR commit leaves behind: the file and
    its row, not recorded. Returns the data set."""
    data = path.read_bytes()
    ds = pydicom.dcmread(path)
    archive.index.upsert(
        index_values(ds, headers_from_dataset(ds)),
        transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
        digest=archive.files.put(data),
        size=len(data),
        recorded=False,
        tenant=tenant,
    )
    return ds


def test_unrecorded_instances_are_recorded_when_the_archive_reopens(
    sqlite_url: str, tmp_path: Path, object_store: str
) -> None:
    settings = node_settings(sqlite_url, tmp_path, port="off", object_store=object_store)
    hub = build_hub(settings)
    archive = DicomArchive(hub)
    ds = catalogue_unrecorded(archive, dicomdir_files()[0])
    archive.close()
    assert current(hub, "ImagingStudy") == []
    reopened = DicomArchive(hub)
    try:
        assert reopened.drain()
        assert reopened.index.unrecorded() == []
        (study,) = current(hub, "ImagingStudy")
        assert study["series"][0]["instance"][0]["uid"] == str(ds.SOPInstanceUID)
    finally:
        reopened.close()
        hub.store.engine.dispose()


def test_an_instance_recorded_after_a_crash_keeps_its_tenant(
    sqlite_url: str, tmp_path: Path
) -> None:
    from fhirhub.fhir_store.tenancy import tenant_of

    hub = build_hub(node_settings(sqlite_url, tmp_path, port="off"))
    archive = DicomArchive(hub)
    catalogue_unrecorded(archive, dicomdir_files()[0], tenant="org-b")
    archive.close()
    reopened = DicomArchive(hub)
    try:
        assert reopened.drain()
        (study,) = current(hub, "ImagingStudy")
        assert tenant_of(study) == "org-b"
    finally:
        reopened.close()
        hub.store.engine.dispose()


def test_plugin_starts_the_listener_with_the_app(sqlite_url: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from fhirhub.core.http.app import create_app

    # port "0": any free port; accept_unknown_aes: any calling AE title
    hub = build_hub(node_settings(sqlite_url, tmp_path, accept_unknown_aes=True))
    with TestClient(create_app(hub=hub)) as client:
        node = dicom_node(hub)
        assert node.running
        ae = AE(ae_title="ANYONE")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", int(node.server.server_address[1]), ae_title=NODE_AET)
        assert assoc.is_established and assoc.send_c_echo().Status == 0
        assoc.release()
        health = client.get("/healthz").json()
        assert health["checks"]["dicom-listener"] == "ok"
        assert "pacs-retrieve" in client.get("/fhir/metadata").text
    assert dicom_node(hub) is None
    hub.store.engine.dispose()


def test_unrecorded_instances_wait_for_an_unreachable_store_and_vanished_ones_are_dropped(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Recovery on S3 as on files: an instance whose bytes are gone is dropped (logged); one
    whose store is out of reach at start-up keeps its row until a later opening can read it."""
    from tests.adapters.dicom.conftest import S3Server, free_port

    server = S3Server(free_port()).start()
    bucket = server.new_bucket()
    hub = build_hub(
        node_settings(sqlite_url, tmp_path, port="off", object_store=server.url(bucket))
    )
    archive = DicomArchive(hub)
    kept, vanished = dicomdir_files()[:2]
    for path in (kept, vanished):
        catalogue_unrecorded(archive, path)
    archive.files.delete(archive.files.put(vanished.read_bytes()))
    archive.close()
    server.stop()
    try:
        unreachable = DicomArchive(hub)  # opens (C-FIND, QIDO work) with the store down
        assert unreachable.drain()
        assert len(unreachable.index.unrecorded()) == 2  # nothing dropped for an outage
        unreachable.close()
        assert current(hub, "ImagingStudy") == []
        # the server comes back with the bucket's content (moto forgets it: put it back)
        server.start()
        server.client().make_bucket(bucket)
        S3Store.from_url(server.url(bucket)).put(kept.read_bytes())
        reopened = DicomArchive(hub)
        assert reopened.drain()
        assert reopened.index.unrecorded() == [] and reopened.index.count() == 1
        (study,) = current(hub, "ImagingStudy")
        assert study["series"][0]["instance"][0]["uid"] == str(pydicom.dcmread(kept).SOPInstanceUID)
        reopened.close()
    finally:
        server.stop()
        hub.store.engine.dispose()
