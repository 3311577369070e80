"""fhirhub as a DICOM client of a remote PACS: C-ECHO, C-FIND, C-MOVE and C-GET (PS3.4 C).

A retrieve imports what arrives through :meth:`DicomArchive.store_part10`, exactly like an
instance a modality pushed, so the remote studies appear as ImagingStudy resources.

* C-MOVE asks the PACS to send the study to fhirhub's own AE title; the PACS must know that
  title's address (its modality table), and fhirhub's listener must be running. The C-MOVE's
  final response comes only after every sub-operation was acknowledged, so when
  :func:`retrieve` returns the instances are stored.
* C-GET brings the instances back on the same association (no listener, no registration at
  the PACS); the storage contexts are proposed with the SCP role (PS3.7 D.3.3.4).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, StoragePresentationContexts, build_role, evt

# pynetdicom creates its SOP class constants at import time: invisible to mypy
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from fhirhub.adapters.dicom.archive import DicomArchive, InstanceRejected
from fhirhub.adapters.dicom.config import RemoteNode
from fhirhub.adapters.dicom.scp import MAX_PDU, on_connection_open

if TYPE_CHECKING:
    from pynetdicom.association import Association
    from pynetdicom.events import Event

log = logging.getLogger("fhirhub.dicom")

#: Keys asked for in a study-level C-FIND (PS3.4 C.6.2.1.2 Study Root, study level).
STUDY_RETURN_KEYS = (
    "StudyInstanceUID",
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyDescription",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
#: C-GET can negotiate at most 128 presentation contexts (PS3.8 9.3.2.2: odd ids 1-255),
#: minus the Q/R one; the most common storage classes come first in pynetdicom's list.
GET_STORAGE_CONTEXTS = 120
GET_TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
]


class PacsError(RuntimeError):
    """The remote PACS could not be reached or answered with a failure."""


@dataclass
class RetrieveResult:
    study_uids: list[str]
    completed: int = 0
    failed: int = 0
    warnings: int = 0
    imaging_studies: list[str] = field(default_factory=list)


def _client_ae(aet: str) -> AE:
    ae = AE(ae_title=aet)
    ae.maximum_pdu_size = MAX_PDU
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    return ae


def _associate(ae: AE, pacs: RemoteNode, **kwargs: Any) -> Association:
    handlers = [(evt.EVT_CONN_OPEN, on_connection_open), *kwargs.pop("evt_handlers", [])]
    assoc = ae.associate(pacs.host, pacs.port, ae_title=pacs.aet, evt_handlers=handlers, **kwargs)
    if not assoc.is_established:
        raise PacsError(
            f"No association with {pacs.aet} at {pacs.host}:{pacs.port} "
            "(rejected, aborted or unreachable)"
        )
    return assoc


def echo(pacs: RemoteNode, *, calling_aet: str) -> bool:
    ae = _client_ae(calling_aet)
    ae.add_requested_context(Verification)
    assoc = _associate(ae, pacs)
    try:
        status = assoc.send_c_echo()
        return bool(status) and status.Status == 0x0000
    finally:
        assoc.release()


def find_studies(
    pacs: RemoteNode, criteria: dict[str, str], *, calling_aet: str
) -> list[dict[str, Any]]:
    """Study-level C-FIND in the Study Root model; each match as keyword -> value."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    for keyword in STUDY_RETURN_KEYS:
        setattr(identifier, keyword, "")
    for keyword, value in criteria.items():
        setattr(identifier, keyword, value)
    ae = _client_ae(calling_aet)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = _associate(ae, pacs)
    matches: list[dict[str, Any]] = []
    try:
        for status, found in assoc.send_c_find(
            identifier, StudyRootQueryRetrieveInformationModelFind
        ):
            if not status:
                raise PacsError("C-FIND: the association was aborted or timed out")
            if status.Status in (0xFF00, 0xFF01) and found is not None:
                matches.append(_as_dict(found))
            elif status.Status != 0x0000:
                raise PacsError(f"C-FIND failed with status 0x{status.Status:04X}")
    finally:
        assoc.release()
    return matches


def _as_dict(ds: Dataset) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for keyword in STUDY_RETURN_KEYS:
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        if type(value).__name__ == "MultiValue":
            out[keyword] = [str(v) for v in value]
        elif keyword.startswith("NumberOf"):
            out[keyword] = int(value)
        else:
            out[keyword] = str(value)
    return out


def _study_identifier(study_uid: str) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_uid
    return identifier


def _tally(result: RetrieveResult, responses: Any, operation: str) -> None:
    for status, _identifier in responses:
        if not status:
            raise PacsError(f"{operation}: the association was aborted or timed out")
        code = int(status.Status)
        if code in (0xFF00, 0xFF01):
            continue
        result.completed += int(status.get("NumberOfCompletedSuboperations", 0) or 0)
        result.failed += int(status.get("NumberOfFailedSuboperations", 0) or 0)
        result.warnings += int(status.get("NumberOfWarningSuboperations", 0) or 0)
        if code not in (0x0000, 0xB000):
            raise PacsError(f"{operation} failed with status 0x{code:04X}")


def move_studies(
    pacs: RemoteNode, study_uids: Sequence[str], *, calling_aet: str, destination_aet: str
) -> RetrieveResult:
    """C-MOVE each study from the PACS to ``destination_aet`` (normally fhirhub itself)."""
    result = RetrieveResult(list(study_uids))
    ae = _client_ae(calling_aet)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = _associate(ae, pacs)
    try:
        for uid in study_uids:
            responses = assoc.send_c_move(
                _study_identifier(uid), destination_aet, StudyRootQueryRetrieveInformationModelMove
            )
            _tally(result, responses, "C-MOVE")
    finally:
        assoc.release()
    return result


def get_studies(
    pacs: RemoteNode,
    study_uids: Sequence[str],
    archive: DicomArchive,
    *,
    calling_aet: str,
    tenant: str | None = None,
) -> RetrieveResult:
    """C-GET each study; every instance received is stored in ``archive`` for ``tenant``
    (None: the default tenant) as it arrives."""
    result = RetrieveResult(list(study_uids))
    ae = _client_ae(calling_aet)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    roles = []
    for context in StoragePresentationContexts[:GET_STORAGE_CONTEXTS]:
        assert context.abstract_syntax is not None  # every listed context names its class
        ae.add_requested_context(context.abstract_syntax, GET_TRANSFER_SYNTAXES)
        roles.append(build_role(context.abstract_syntax, scp_role=True))

    def on_store(event: Event) -> int:
        try:
            archive.store_part10(
                event.encoded_dataset(include_meta=True), wait=False, tenant=tenant
            )
        except InstanceRejected as rejected:
            return rejected.status
        except Exception:
            log.exception("Instance retrieved by C-GET could not be stored")
            return 0x0110
        return 0x0000

    assoc = _associate(ae, pacs, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        for uid in study_uids:
            responses = assoc.send_c_get(
                _study_identifier(uid), StudyRootQueryRetrieveInformationModelGet
            )
            _tally(result, responses, "C-GET")
    finally:
        assoc.release()
    return result


def retrieve(
    archive: DicomArchive,
    pacs: RemoteNode,
    study_uids: Sequence[str],
    *,
    own_aet: str,
    method: str = "move",
    tenant: str | None = None,
) -> RetrieveResult:
    """Bring studies from the PACS into fhirhub and report their ImagingStudy references.
    ``tenant`` is the tenant the instances are stored for (None: the default tenant): with
    C-GET the archive stores them so; with C-MOVE the listener does, by the PACS's AE title,
    and the caller passes the tenant that maps to."""
    if method == "move":
        result = move_studies(pacs, study_uids, calling_aet=own_aet, destination_aet=own_aet)
    elif method == "get":
        result = get_studies(pacs, study_uids, archive, calling_aet=own_aet, tenant=tenant)
    else:
        raise ValueError(f"method must be 'move' or 'get', not {method!r}")
    archive.drain()
    for uid in study_uids:
        current = archive.current_study(uid, tenant or archive.default_tenant)
        if current is not None:
            result.imaging_studies.append(f"ImagingStudy/{current.resource_id}")
    return result
