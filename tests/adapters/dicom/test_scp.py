"""The DICOM node over real associations, with pynetdicom as the client (PS3.4, PS3.7)."""

from __future__ import annotations

import socket
import struct
import time

import orjson
import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)
from sqlalchemy import text

from tests.adapters.dicom.conftest import (
    CLIENT_AET,
    NODE_AET,
    TEST_FILES,
    RunningNode,
    dicomdir_files,
)


def associate(node: RunningNode, aet: str = CLIENT_AET, contexts=None):  # noqa: ANN001, ANN201
    ae = AE(ae_title=aet)
    for context in contexts or [Verification]:
        ae.add_requested_context(context)
    return ae.associate("127.0.0.1", node.port, ae_title=NODE_AET)


def store(node: RunningNode, datasets: list[Dataset]) -> list[int]:
    ae = AE(ae_title=CLIENT_AET)
    for sop_class in {str(ds.SOPClassUID) for ds in datasets}:
        ae.add_requested_context(
            sop_class,
            sorted({str(ds.file_meta.TransferSyntaxUID) for ds in datasets}),
        )
    assoc = ae.associate("127.0.0.1", node.port, ae_title=NODE_AET)
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()
        node.archive.drain()  # C-STORE answers before the FHIR commit (adapters/dicom/recorder)


def resources(node: RunningNode, resource_type: str) -> list[dict]:
    with node.hub.store.read() as conn:
        rows = conn.execute(
            text("SELECT content FROM resource_current WHERE resource_type = :t AND NOT deleted"),
            {"t": resource_type},
        ).fetchall()
    return [orjson.loads(row[0]) for row in rows]


def log_size(node: RunningNode) -> int:
    with node.hub.store.read() as conn:
        return int(conn.execute(text("SELECT count(*) FROM resource_version")).scalar_one())


def test_echo_and_tcp_nodelay(running_node: RunningNode) -> None:
    assoc = associate(running_node)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0
    server = running_node.node.server
    assert server is not None
    (accepted,) = server.active_associations
    raw = accepted.dul.socket.socket
    assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assoc.release()


def test_unknown_calling_ae_is_rejected(running_node: RunningNode) -> None:
    assoc = associate(running_node, aet="INTRUDER")
    assert assoc.is_rejected
    assert associate(running_node).is_established  # and the node is still up


def test_store_builds_imaging_studies_and_is_idempotent(running_node: RunningNode) -> None:
    files = dicomdir_files()
    datasets = [pydicom.dcmread(p) for p in files]
    assert set(store(running_node, datasets)) == {0}
    studies = resources(running_node, "ImagingStudy")
    study_uids = {str(ds.StudyInstanceUID) for ds in datasets}
    assert len(studies) == len(study_uids)
    assert sum(s["numberOfInstances"] for s in studies) == len(files)
    patients = resources(running_node, "Patient")
    assert {p["identifier"][0]["value"] for p in patients} == {str(ds.PatientID) for ds in datasets}
    for study in studies:
        uid = study["identifier"][0]["value"].removeprefix("urn:oid:")
        expected = [ds for ds in datasets if ds.StudyInstanceUID == uid]
        assert study["numberOfInstances"] == len(expected)
        assert study["numberOfSeries"] == len({ds.SeriesInstanceUID for ds in expected})
        assert study["subject"]["reference"].startswith("Patient/")
        assert study["endpoint"][0]["reference"].startswith("Endpoint/")
    assert len(resources(running_node, "Endpoint")) == 1
    before = log_size(running_node)
    assert set(store(running_node, datasets[:5])) == {0}
    assert log_size(running_node) == before  # re-sending changes nothing
    assert running_node.archive.index.count() == len(files)


def test_bad_instances_get_failure_statuses_and_leave_nothing(running_node: RunningNode) -> None:
    truncated = pydicom.dcmread(TEST_FILES / "MR_truncated.dcm")
    no_study = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    del no_study.StudyInstanceUID
    statuses = store(running_node, [truncated])
    assert statuses == [0xC000]
    assert store(running_node, [no_study]) == [0xA900]
    assert resources(running_node, "ImagingStudy") == []
    assert running_node.archive.index.count() == 0
    assert list((running_node.archive.files.root / "sha256").rglob("*.dcm")) == []


def test_unknown_sop_class_is_not_negotiated(running_node: RunningNode) -> None:
    assoc = associate(running_node, contexts=["1.2.826.0.1.3680043.9.9999.1"])
    # pynetdicom aborts or never establishes when no presentation context is accepted
    assert not assoc.is_established or not assoc.accepted_contexts
    if assoc.is_established:
        assoc.abort()
    assert associate(running_node).is_established


def test_big_endian_and_private_tags(running_node: RunningNode) -> None:
    big = pydicom.dcmread(TEST_FILES / "MR_small_bigendian.dcm")
    assert store(running_node, [big]) == [0]
    private = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    private.add_new(0x00091010, "LO", "vendor private")
    private.private_block(0x0011, "ACME 1.0", create=True).add_new(0x01, "SH", "secret")
    assert store(running_node, [private]) == [0]
    assert len(resources(running_node, "ImagingStudy")) == 2


def test_client_disconnecting_mid_transfer(running_node: RunningNode) -> None:
    ct = TEST_FILES / "CT_small.dcm"
    ds = pydicom.dcmread(ct)
    ae = AE(ae_title=CLIENT_AET)
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", running_node.port, ae_title=NODE_AET)
    assert assoc.is_established
    raw: socket.socket = assoc.dul.socket.socket
    # A P-DATA-TF PDU announcing 100 kB, of which only a few bytes ever arrive (PS3.8 9.3.5)
    raw.sendall(struct.pack(">BBL", 0x04, 0, 100_000) + b"\x00" * 200)
    raw.close()
    assoc.abort()
    time.sleep(0.3)
    assert running_node.archive.index.count() == 0
    assert resources(running_node, "ImagingStudy") == []
    assert store(running_node, [ds]) == [0]  # the node is still serving


def test_find_at_every_level(running_node: RunningNode) -> None:
    datasets = [pydicom.dcmread(p) for p in dicomdir_files()]
    store(running_node, datasets)

    def find(model: str, **keys: str) -> list[Dataset]:
        identifier = Dataset()
        for keyword, value in keys.items():
            setattr(identifier, keyword, value)
        assoc = associate(running_node, contexts=[model])
        try:
            return [
                found
                for status, found in assoc.send_c_find(identifier, model)
                if status and status.Status == 0xFF00
            ]
        finally:
            assoc.release()

    patients = find(
        PatientRootQueryRetrieveInformationModelFind, QueryRetrieveLevel="PATIENT", PatientID=""
    )
    assert {p.PatientID for p in patients} == {str(ds.PatientID) for ds in datasets}
    studies = find(
        StudyRootQueryRetrieveInformationModelFind,
        QueryRetrieveLevel="STUDY",
        PatientID="77654033",
        StudyInstanceUID="",
        NumberOfStudyRelatedInstances="",
    )
    assert len(studies) == 2
    assert sum(int(s.NumberOfStudyRelatedInstances) for s in studies) == 7
    series = find(
        StudyRootQueryRetrieveInformationModelFind,
        QueryRetrieveLevel="SERIES",
        StudyInstanceUID=studies[0].StudyInstanceUID,
        SeriesInstanceUID="",
        Modality="",
    )
    assert series and all(s.Modality in ("CR", "CT") for s in series)
    images = find(
        StudyRootQueryRetrieveInformationModelFind,
        QueryRetrieveLevel="IMAGE",
        StudyInstanceUID=studies[0].StudyInstanceUID,
        SeriesInstanceUID=series[0].SeriesInstanceUID,
        SOPInstanceUID="",
    )
    assert len(images) >= 1
    bad = find(StudyRootQueryRetrieveInformationModelFind, QueryRetrieveLevel="PATIENT")
    assert bad == []


@pytest.mark.parametrize("count", [3])
def test_storage_contexts_cover_common_classes(count: int) -> None:
    classes = {c.abstract_syntax for c in StoragePresentationContexts}
    for name in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "rtdose.dcm")[:count]:
        assert str(pydicom.dcmread(TEST_FILES / name).SOPClassUID) in classes
