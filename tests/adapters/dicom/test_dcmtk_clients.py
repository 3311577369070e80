"""dcmtk's tools as independent clients of the node (echoscu, storescu, findscu, movescu,
getscu), with TCP_NODELAY=1 as DESIGN.md asks for dcmtk clients."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

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
        for s in running_node.archive.index.find("STUDY", {"PatientID": "98890234"})
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
