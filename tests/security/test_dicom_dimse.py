"""DIMSE with two tenants: calling AE titles map to tenants, unknown ones are refused at
association, and C-FIND / C-GET / C-MOVE / C-STORE stay inside the caller's tenant. Clients:
dcmtk's storescu/findscu/movescu/echoscu and pynetdicom, over real associations."""

from __future__ import annotations

import copy
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    Verification,
)

from tests.adapters.dicom.conftest import free_port
from tests.security.dicom_hub import (
    NODE_AET,
    ServedHub,
    dcmtk,
    instance,
    served_hub,
    storescu,
    write_files,
)


@pytest.fixture
def viewers() -> dict[str, int]:
    """C-MOVE destinations: VIEWER_A (org-a's workstation), VIEWER_B (org-b's), on ports the
    tests listen on (movescu, a pynetdicom storage SCP)."""
    return {"VIEWER_A": free_port(), "VIEWER_B": free_port()}


@pytest.fixture
def served(sqlite_url: str, tmp_path: Path, viewers: dict[str, int]) -> Iterator[ServedHub]:
    with served_hub(
        sqlite_url,
        tmp_path / "hub",
        tenants={"CT_A": "org-a", "CT_B": "org-b", "VIEWER_A": "org-a", "VIEWER_B": "org-b"},
        destinations={aet: f"127.0.0.1:{port}" for aet, port in viewers.items()},
    ) as hub:
        yield hub


@pytest.fixture
def two_studies(served: ServedHub, tmp_path: Path) -> dict[str, Dataset]:
    """One CT study stored by CT_A (org-a), one MR study by CT_B (org-b), with storescu."""
    ct = instance("CT_small.dcm", patient_id="PAT-A")
    mr = instance("MR_small.dcm", patient_id="PAT-B")
    assert storescu(served, "CT_A", write_files(tmp_path / "a", [ct])).returncode == 0
    assert storescu(served, "CT_B", write_files(tmp_path / "b", [mr])).returncode == 0
    return {"org-a": ct, "org-b": mr}


def findscu_study_uids(served: ServedHub, aet: str) -> set[str]:
    found = dcmtk(
        "findscu",
        "-S",
        "-aet",
        aet,
        "-aec",
        NODE_AET,
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        "StudyInstanceUID",
        "127.0.0.1",
        str(served.dicom_port),
    )
    assert found.returncode == 0, found.stderr
    uids = set()
    for line in (found.stdout + found.stderr).splitlines():
        if "(0020,000d)" in line.lower() and "[" in line:
            uids.add(line.split("[", 1)[1].split("]", 1)[0].strip("\x00 "))
    return uids


def c_get(served: ServedHub, aet: str, study_uid: str) -> list[Dataset]:
    """C-GET a study as ``aet`` with pynetdicom; the instances that came back."""
    received: list[Dataset] = []

    def on_store(event: evt.Event) -> int:
        received.append(event.dataset)
        return 0x0000

    ae = AE(ae_title=aet)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    roles = []
    for context in StoragePresentationContexts[:100]:
        ae.add_requested_context(context.abstract_syntax)
        roles.append(build_role(context.abstract_syntax, scp_role=True))
    assoc = ae.associate(
        "127.0.0.1",
        served.dicom_port,
        ae_title=NODE_AET,
        ext_neg=roles,
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_uid
    try:
        statuses = [
            status.Status
            for status, _ in assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet)
        ]
    finally:
        assoc.release()
    assert statuses and statuses[-1] in (0x0000, 0xB000), [hex(s) for s in statuses]
    return received


def test_an_unknown_calling_ae_is_refused_at_association(served: ServedHub) -> None:
    """A-ASSOCIATE-RJ (permanent, calling AE title not recognised), before any query."""
    ae = AE(ae_title="INTRUDER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", served.dicom_port, ae_title=NODE_AET)
    assert assoc.is_rejected
    refused = dcmtk(
        "echoscu", "-aet", "INTRUDER", "-aec", NODE_AET, "127.0.0.1", str(served.dicom_port)
    )
    assert refused.returncode != 0
    assert "calling ae title not recognized" in (refused.stdout + refused.stderr).lower()
    known = dcmtk("echoscu", "-aet", "CT_A", "-aec", NODE_AET, "127.0.0.1", str(served.dicom_port))
    assert known.returncode == 0, known.stderr


def test_unknown_aes_are_accepted_only_when_configured_open(
    sqlite_url: str, tmp_path: Path
) -> None:
    for open_, accepted in ((False, False), (True, True)):
        with served_hub(sqlite_url, tmp_path / str(open_), accept_unknown_aes=open_) as served:
            ae = AE(ae_title="ANYONE")
            ae.add_requested_context(Verification)
            assoc = ae.associate("127.0.0.1", served.dicom_port, ae_title=NODE_AET)
            assert assoc.is_established == accepted
            if accepted:
                assoc.release()


def test_c_find_answers_from_the_calling_aes_tenant_only(
    served: ServedHub, two_studies: dict[str, Dataset]
) -> None:
    a_uid = str(two_studies["org-a"].StudyInstanceUID)
    b_uid = str(two_studies["org-b"].StudyInstanceUID)
    assert findscu_study_uids(served, "CT_A") == {a_uid}
    assert findscu_study_uids(served, "CT_B") == {b_uid}


def test_c_get_and_c_move_retrieve_from_the_calling_aes_tenant_only(
    served: ServedHub, two_studies: dict[str, Dataset], tmp_path: Path, viewers: dict[str, int]
) -> None:
    a_uid = str(two_studies["org-a"].StudyInstanceUID)
    assert [str(ds.SOPInstanceUID) for ds in c_get(served, "CT_A", a_uid)] == [
        str(two_studies["org-a"].SOPInstanceUID)
    ]
    assert c_get(served, "CT_B", a_uid) == []  # org-b asks for org-a's study: nothing

    def movescu(caller: str, destination: str) -> tuple[int, str]:
        out = tmp_path / f"{caller}-{destination}"
        out.mkdir()
        moved = dcmtk(
            "movescu",
            "-S",
            "-aet",
            destination,
            "-aec",
            NODE_AET,
            "-aem",
            destination,
            "--port",
            str(viewers[destination]),
            "-od",
            str(out),
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={a_uid}",
            "127.0.0.1",
            str(served.dicom_port),
        )
        return len(list(out.iterdir())), moved.stdout + moved.stderr

    # movescu calls as its destination here: VIEWER_A is org-a's, VIEWER_B org-b's
    assert movescu("VIEWER_A", "VIEWER_A")[0] == 1
    count, _log = movescu("VIEWER_B", "VIEWER_B")
    assert count == 0  # org-a's study is not org-b's to move


def test_c_move_never_sends_to_another_tenants_destination(
    served: ServedHub, two_studies: dict[str, Dataset], viewers: dict[str, int]
) -> None:
    """CT_B asks the hub to push its own study to org-a's workstation: refused as an unknown
    destination (0xA801), the workstation (listening) receives nothing."""

    received: list[str] = []

    def on_store(event: evt.Event) -> int:
        received.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    workstation = AE(ae_title="VIEWER_A")
    for context in StoragePresentationContexts:
        workstation.add_supported_context(context.abstract_syntax)
    port = viewers["VIEWER_A"]
    scp = workstation.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        statuses = move_as_ct_b(served, two_studies)
    finally:
        scp.shutdown()
    assert statuses == [0xA801]
    assert received == []


def move_as_ct_b(served: ServedHub, two_studies: dict[str, Dataset]) -> list[int]:
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove

    ae = AE(ae_title="CT_B")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", served.dicom_port, ae_title=NODE_AET)
    assert assoc.is_established
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = str(two_studies["org-b"].StudyInstanceUID)
    try:
        return [
            status.Status
            for status, _ in assoc.send_c_move(
                identifier, "VIEWER_A", StudyRootQueryRetrieveInformationModelMove
            )
        ]
    finally:
        assoc.release()


def test_the_same_sop_instance_stored_by_two_tenants_is_two_objects(
    served: ServedHub, tmp_path: Path
) -> None:
    """org-b's modality sends an instance with org-a's UIDs but other content: org-a keeps
    its bytes and its ImagingStudy; org-b gets its own copy."""
    original = instance("CT_small.dcm", patient_id="PAT-A", PatientName="Alpha^Ann")
    forged = copy.deepcopy(original)
    forged.PatientName = "Forged^Bob"
    forged.PatientID = "PAT-B"
    assert storescu(served, "CT_A", write_files(tmp_path / "a", [original])).returncode == 0
    assert storescu(served, "CT_B", write_files(tmp_path / "b", [forged])).returncode == 0

    uid = str(original.StudyInstanceUID)
    (mine,) = c_get(served, "CT_A", uid)
    (theirs,) = c_get(served, "CT_B", uid)
    assert str(mine.PatientName) == "Alpha^Ann"
    assert str(theirs.PatientName) == "Forged^Bob"

    from fhirhub.sdk import search

    studies = search(served.hub, "ImagingStudy", [("identifier", f"urn:dicom:uid|urn:oid:{uid}")])
    assert sorted(s["meta"]["security"][0]["code"] for s in studies) == ["org-a", "org-b"]
    assert all(s["numberOfInstances"] == 1 for s in studies)


# -- one peer cannot lock the others out ----------------------------------------------------


def idle_connections(port: int, count: int, source: str = "127.0.0.1") -> list[socket.socket]:
    """TCP connections that never send a PDU (each holds one of the node's association slots
    until the ACSE timeout)."""
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sockets.append(sock)
    return sockets


def echo_from(port: int, source: str, aet: str = "CT_A") -> bool:
    ae = AE(ae_title=aet)
    ae.acse_timeout = ae.network_timeout = 20
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AET, bind_address=(source, 0))
    if not assoc.is_established:
        return False
    ok = assoc.send_c_echo().Status == 0
    assoc.release()
    return bool(ok)


def test_idle_connections_from_one_peer_do_not_lock_out_another(
    sqlite_url: str, tmp_path: Path
) -> None:
    """The node takes 8 associations at once; one peer may hold 4 of them. A peer that opens
    8 silent connections gets 4, and a second peer still associates at once."""
    with served_hub(
        sqlite_url, tmp_path, max_associations=8, max_associations_per_peer=4
    ) as served:
        flood = idle_connections(served.dicom_port, 8, source="127.0.0.1")
        try:
            assert echo_from(served.dicom_port, source="127.0.0.2")
            closed = []  # by the node before any PDU: EOF at once (well within acse_timeout)
            for sock in flood:
                sock.settimeout(0.5)
                try:
                    closed.append(sock.recv(1) == b"")
                except TimeoutError:
                    closed.append(False)
                except ConnectionResetError:
                    closed.append(True)
            assert closed == [False] * 4 + [True] * 4
        finally:
            for sock in flood:
                sock.close()


def test_silent_connections_and_idle_associations_are_closed_after_their_time_outs(
    sqlite_url: str, tmp_path: Path
) -> None:
    with served_hub(sqlite_url, tmp_path, acse_timeout=1, idle_timeout=2) as served:
        (silent,) = idle_connections(served.dicom_port, 1)
        silent.settimeout(15)
        assert silent.recv(1) == b""  # no A-ASSOCIATE-RQ within acse_timeout: closed
        silent.close()

        ae = AE(ae_title="CT_A")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", served.dicom_port, ae_title=NODE_AET)
        assert assoc.is_established
        deadline = time.monotonic() + 15
        while assoc.is_established and time.monotonic() < deadline:
            time.sleep(0.1)  # silent for idle_timeout: the node aborts the association
        assert assoc.is_aborted
