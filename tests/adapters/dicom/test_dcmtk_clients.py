"""dcmtk's tools as independent clients of the node (echoscu, storescu, findscu, movescu,
getscu), with TCP_NODELAY=1 (without it each request waits for delayed ACKs)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest

from fhirhub.adapters.dicom.instance_index import ALL_TENANTS
from tests.adapters.dicom.conftest import (
    MOVE_AET,
    NODE_AET,
    TEST_FILES,
    RunningNode,
    dcmtk_env,
    dicomdir_files,
    need_dcmtk,
)

pytestmark = pytest.mark.slow


def dcmtk(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    need_dcmtk()
    return subprocess.run(
        list(args),
        env=dcmtk_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        errors="replace",
    )


def test_echoscu(running_node: RunningNode) -> None:
    ok = dcmtk("echoscu", "-aet", "ECHOSCU", "-aec", NODE_AET, "127.0.0.1", str(running_node.port))
    assert ok.returncode == 0, ok.stderr
    refused = dcmtk(
        "echoscu", "-aet", "NOBODY", "-aec", NODE_AET, "127.0.0.1", str(running_node.port)
    )
    assert refused.returncode != 0
    assert "reject" in (refused.stdout + refused.stderr).lower()


def test_storescu_then_find_move_get(running_node: RunningNode, tmp_path: Path) -> None:
    port = str(running_node.port)
    files = [str(p) for p in dicomdir_files()]
    sent = dcmtk("storescu", "-aet", "STORESCU", "-aec", NODE_AET, "127.0.0.1", port, *files)
    assert sent.returncode == 0, sent.stderr
    assert running_node.archive.index.count() == len(files)
    # RLE needs its transfer syntax proposed explicitly (-xr)
    rle = dcmtk(
        "storescu",
        "-xr",
        "-aet",
        "STORESCU",
        "-aec",
        NODE_AET,
        "127.0.0.1",
        port,
        str(TEST_FILES / "MR_small_RLE.dcm"),
    )
    assert rle.returncode == 0, rle.stderr

    found = dcmtk(
        "findscu",
        "-S",
        "-aet",
        "FINDSCU",
        "-aec",
        NODE_AET,
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        "PatientID=77654033",
        "-k",
        "StudyInstanceUID",
        "-k",
        "NumberOfStudyRelatedInstances",
        "127.0.0.1",
        port,
    )
    assert found.returncode == 0, found.stderr
    assert found.stderr.count("StudyInstanceUID") + found.stdout.count("StudyInstanceUID") >= 2

    study_uid = next(
        s["StudyInstanceUID"]
        for s in running_node.archive.index.find(ALL_TENANTS, "STUDY", {"PatientID": "98890234"})
        if s["NumberOfStudyRelatedInstances"] == 11
    )
    moved = tmp_path / "moved"
    moved.mkdir()
    move = dcmtk(
        "movescu",
        "-S",
        "-aet",
        MOVE_AET,
        "-aec",
        NODE_AET,
        "-aem",
        MOVE_AET,
        "--port",
        str(running_node.move_port),
        "-od",
        str(moved),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={study_uid}",
        "127.0.0.1",
        port,
    )
    assert move.returncode == 0, move.stderr
    assert len(list(moved.iterdir())) == 11

    got = tmp_path / "got"
    got.mkdir()
    get = dcmtk(
        "getscu",
        "-S",
        "-aet",
        "GETSCU",
        "-aec",
        NODE_AET,
        "-od",
        str(got),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={study_uid}",
        "127.0.0.1",
        port,
    )
    assert get.returncode == 0, get.stderr
    assert len(list(got.iterdir())) == 11

    unknown = dcmtk(
        "movescu",
        "-S",
        "-aet",
        MOVE_AET,
        "-aec",
        NODE_AET,
        "-aem",
        "NOWHERE",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={study_uid}",
        "127.0.0.1",
        port,
    )
    assert "MoveDestinationUnknown" in unknown.stdout + unknown.stderr


def test_storescu_calling_ae_decides_the_tenant(sqlite_url: str, tmp_path: Path) -> None:
    """``[plugin.dicom] tenants``: what a modality stores belongs to its hospital."""
    from fhirhub.adapters.dicom.archive import archive_for
    from fhirhub.adapters.dicom.config import DicomConfig
    from fhirhub.adapters.dicom.scp import DicomNode
    from fhirhub.core.hub import build_hub
    from fhirhub.fhir_store.store import read_current
    from fhirhub.fhir_store.tenancy import tenant_of
    from tests.adapters.dicom.conftest import node_settings

    settings = node_settings(sqlite_url, tmp_path, tenants={"CT_WARD_B": "org-b"})
    hub = build_hub(settings)
    archive = archive_for(hub)
    node = DicomNode(archive, DicomConfig.from_settings(settings))
    port = node.start(host="127.0.0.1", port=0)
    try:
        sent = dcmtk(
            "storescu",
            "-aet",
            "CT_WARD_B",
            "-aec",
            NODE_AET,
            "127.0.0.1",
            str(port),
            str(TEST_FILES / "CT_small.dcm"),
        )
        assert sent.returncode == 0, sent.stderr
        assert archive.drain()
        with hub.store.read() as conn:
            (study_id,) = [
                row[0]
                for row in conn.exec_driver_sql(
                    "SELECT resource_id FROM resource_current WHERE resource_type='ImagingStudy'"
                )
            ]
            study = read_current(conn, "ImagingStudy", study_id)
            assert study is not None and study.tenant == "org-b"
            patient_ref = orjson.loads(study.content or b"{}")["subject"]["reference"]
            patient = read_current(conn, *patient_ref.split("/"))
            assert patient is not None
            assert tenant_of(orjson.loads(patient.content or b"{}")) == "org-b"
    finally:
        node.stop()
        archive.close()
        hub.store.engine.dispose()
