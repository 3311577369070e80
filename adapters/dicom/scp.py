"""fhirhub as a DICOM node: the Application Entity that accepts associations (PS3.7, PS3.4).

Services: Verification (C-ECHO), Storage (C-STORE, every storage SOP class pynetdicom knows,
every transfer syntax it can receive), Query/Retrieve in the Patient Root and Study Root
information models (C-FIND at PATIENT/STUDY/SERIES/IMAGE level, C-MOVE to configured
destinations, C-GET on the same association). Each handler is a small function turning protocol
data into a call on the :class:`DicomArchive` and its answer back into a DIMSE status.

Who is calling decides what they see. The calling AE title maps to a tenant
(``[plugin.dicom] tenants``, :meth:`DicomConfig.tenant_of_ae`); an AE the configuration does
not name is refused at association with A-ASSOCIATE-RJ (PS3.8 9.3.4: rejected-permanent,
service-user, calling AE title not recognized) unless ``accept_unknown_aes`` is set. Every
C-FIND, C-MOVE and C-GET is evaluated inside that tenant's part of the catalogue, C-STORE stores
for it, and C-MOVE sends only to destinations of the same tenant.

One peer cannot starve the others: each peer address may hold ``max_associations_per_peer``
connections at once (counted from the TCP accept, before any PDU, so connections that never
send an A-ASSOCIATE-RQ count too), the A-ASSOCIATE-RQ must arrive within ``acse_timeout`` (the
ARTIM timer of PS3.8 9.1.5) and an association silent for ``idle_timeout`` is aborted.

Why TCP_NODELAY: a C-STORE exchange is a small request PDU followed by the peer waiting for a
small response PDU; with Nagle's algorithm on one side and delayed ACK on the other, every
round trip stalls ~40-90 ms (Nagle and delayed ACKs). It is set on every accepted
socket before the first PDU is read, and on the sockets the node opens as a requestor.
"""

from __future__ import annotations

import functools
import logging
import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt

# pynetdicom creates its SOP class constants at import time: invisible to mypy
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from fhirhub.adapters.dicom.archive import DicomArchive, InstanceRejected, read_part10
from fhirhub.adapters.dicom.config import DicomConfig, UnknownAE
from fhirhub.adapters.dicom.instance_index import LEVELS, QueryError, TenantView
from fhirhub.sdk import FhirError

if TYPE_CHECKING:
    from pynetdicom.events import Event

log = logging.getLogger("fhirhub.dicom")

# DIMSE status codes (PS3.4 Annex B.2.3 storage, C.4.1.1.4 find, C.4.2.1.5 move/get, PS3.7 C).
SUCCESS = 0x0000
PENDING = 0xFF00
CANCEL = 0xFE00
PROCESSING_FAILURE = 0x0110
OUT_OF_RESOURCES = 0xA700
IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900
UNABLE_TO_PROCESS = 0xC000

#: Maximum PDU we accept (PS3.8 9.3.3.3: 0 means unlimited; larger PDUs mean fewer sends).
MAX_PDU = 256 * 1024

#: A-ASSOCIATE-RJ for an unknown calling AE (PS3.8 Table 9-21): rejected-permanent (1),
#: DICOM UL service-user (1), calling-AE-title-not-recognized (3).
REJECT_UNKNOWN_CALLER = (0x01, 0x01, 0x03)

QUERY_RETRIEVE_FIND = (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)
QUERY_RETRIEVE_MOVE_GET = (
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelGet,
)


def set_nodelay(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # not a TCP socket (tests may pass socketpairs)
        pass


def on_connection_open(event: Event) -> None:
    """EVT_CONN_OPEN handler for associations the node requests (C-MOVE, SCU)."""
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        set_nodelay(sock)


class NoDelayAssociationServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with TCP_NODELAY, a peer-host allow-list and a limit on
    the connections one peer address holds at once."""

    allowed_hosts: tuple[str, ...] = ()
    max_per_peer: int = 0  # 0: no per-peer limit

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._peer_lock = threading.Lock()
        #: Connections accepted whose association thread has not started yet, per address.
        self._starting: dict[str, int] = {}

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        client, address = super().get_request()
        set_nodelay(client)
        return client, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """socketserver hook, on the accepting thread: a peer not on the host allow-list, or
        already holding ``max_per_peer`` connections, is closed before any PDU is read."""
        host = str(client_address[0])
        if self.allowed_hosts and host not in self.allowed_hosts:
            log.warning("DICOM connection from %s refused: host not allowed", host)
            return False
        if self.max_per_peer:
            with self._peer_lock:
                held = self._starting.get(host, 0) + self.connections_from(host)
                if held >= self.max_per_peer:
                    log.warning(
                        "DICOM connection from %s refused: it holds %d (max_associations_per_peer)",
                        host,
                        held,
                    )
                    return False
                self._starting[host] = self._starting.get(host, 0) + 1
        return True

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Runs the request (which starts the association's own thread), then stops counting
        it as starting: from here on it is counted as a live association."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            if self.max_per_peer:
                host = str(client_address[0])
                with self._peer_lock:
                    left = self._starting.get(host, 0) - 1
                    if left > 0:
                        self._starting[host] = left
                    else:
                        self._starting.pop(host, None)

    def connections_from(self, host: str) -> int:
        """Live association threads (negotiating, established or closing) of one peer."""
        count = 0
        for assoc in self.active_associations:
            info = assoc.requestor.address_info
            if info is not None and info.address == host:
                count += 1
        return count


# -- query identifiers -----------------------------------------------------------------------


def identifier_keys(identifier: Dataset) -> dict[str, str]:
    """The matching keys of a C-FIND/C-MOVE identifier as keyword -> DICOM matching string."""
    keys: dict[str, str] = {}
    for element in identifier:
        if element.keyword in ("QueryRetrieveLevel", "SpecificCharacterSet", ""):
            continue
        value = element.value
        if value is None:
            keys[element.keyword] = ""
        elif element.VR == "SQ":
            continue
        elif isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
            keys[element.keyword] = "\\".join(str(v) for v in value)
        else:
            keys[element.keyword] = str(value)
    return keys


def response_identifier(level: str, requested: list[str], match: dict[str, Any]) -> Dataset:
    """A C-FIND response holds the requested keys only, filled from the match (C.4.1.1.3.2)."""
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword in requested:
        value = match.get(keyword)
        if isinstance(value, list):
            value = list(value) if value else None
        setattr(ds, keyword, "" if value is None else value)
    return ds


@functools.cache
def supported_contexts() -> tuple[Any, ...]:
    """The presentation contexts the node accepts, built once per process (validating ~7,000
    transfer syntax UIDs takes ~60 ms, too long to repeat at every start-up)."""
    ae = AE()
    ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
    for context in AllStoragePresentationContexts:
        assert context.abstract_syntax is not None  # every listed context names its class
        # scp_role/scu_role: also accept a C-GET requestor acting as Storage SCP
        ae.add_supported_context(
            context.abstract_syntax, ALL_TRANSFER_SYNTAXES, scp_role=True, scu_role=False
        )
    for sop_class in QUERY_RETRIEVE_FIND + QUERY_RETRIEVE_MOVE_GET:
        ae.add_supported_context(sop_class)
    return tuple(ae.supported_contexts)


class DicomNode:
    """The Application Entity, its handlers and its listening thread."""

    def __init__(self, archive: DicomArchive, config: DicomConfig) -> None:
        self.archive = archive
        self.config = config
        self.server: NoDelayAssociationServer | None = None
        self._thread: threading.Thread | None = None
        self.ae = self._make_ae()
        # pynetdicom logs every PDU summary at INFO; one line per association is our job
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)

    def _make_ae(self) -> AE:
        ae = AE(ae_title=self.config.aet)
        ae.maximum_pdu_size = MAX_PDU
        ae.maximum_associations = self.config.max_associations
        ae.network_timeout = self.config.idle_timeout  # silence on an association: A-ABORT
        ae.acse_timeout = self.config.acse_timeout  # A-ASSOCIATE-RQ after connecting
        ae.dimse_timeout = self.config.dimse_timeout
        return ae

    @property
    def handlers(self) -> list[tuple[Any, Any]]:
        return [
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_C_FIND, self.on_find),
            (evt.EVT_C_MOVE, self.on_move),
            (evt.EVT_C_GET, self.on_get),
        ]

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, host: str | None = None, port: int | None = None) -> int:
        """Listen in a background thread; return the bound port (``port=0``: OS-assigned)."""
        address = (host or self.config.host, port if port is not None else self.config.port or 0)
        server = self.ae.make_server(
            address,
            evt_handlers=self.handlers,  # type: ignore[arg-type]
            contexts=list(supported_contexts()),
            server_class=NoDelayAssociationServer,
        )
        assert isinstance(server, NoDelayAssociationServer)
        server.allowed_hosts = self.config.allowed_hosts
        server.max_per_peer = self.config.max_associations_per_peer
        self.ae._servers.append(server)  # as AE.start_server does: server.shutdown() expects it
        self.server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},  # shutdown() waits up to one poll interval
            name=f"dicom-scp-{address[1]}",
            daemon=True,
        )
        self._thread.start()
        bound = int(server.server_address[1])
        log.info("DICOM node %s listening on %s:%d", self.config.aet, address[0], bound)
        return bound

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()  # stops serve_forever, closes the socket and associations
            self.server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- handlers -----------------------------------------------------------------------------

    def on_requested(self, event: Event) -> None:
        """EVT_REQUESTED (the A-ASSOCIATE-RQ arrived): refuse a calling AE the configuration
        does not name, before any presentation context is negotiated."""
        request = event.assoc.requestor.primitive
        assert request is not None  # EVT_REQUESTED fires once the A-ASSOCIATE-RQ is decoded
        caller = str(request.calling_ae_title).strip()
        try:
            self.config.tenant_of_ae(caller)
        except UnknownAE:
            log.warning(
                "DICOM association from %s refused: calling AE %r is not configured "
                "([plugin.dicom] tenants or allowed_aes)",
                event.assoc.requestor.address,
                caller,
            )
            event.assoc.acse.send_reject(*REJECT_UNKNOWN_CALLER)
            event.assoc.kill()

    def _view(self, event: Event) -> TenantView:
        """The part of the catalogue the calling AE sees (refused AEs never get here)."""
        return TenantView(self.config.tenant_of_ae(str(event.assoc.requestor.ae_title)))

    def on_store(self, event: Event) -> int | Dataset:
        """C-STORE: store for the calling AE's tenant, record in FHIR, answer 0x0000 or a
        failure status (B.2.3)."""
        requestor = event.assoc.requestor
        request = requestor.primitive  # the A-ASSOCIATE-RQ: the title the modality addressed
        called = str(request.called_ae_title if request else event.assoc.acceptor.ae_title)
        try:
            data = event.encoded_dataset(include_meta=True)
            ds = read_part10(data)
            self.archive.store_part10(
                data,
                ds,
                wait=self.config.wait_for_fhir,
                tenant=self._view(event).tenant,
                calling_aet=str(requestor.ae_title).strip() or None,
                called_aet=called.strip() or None,
            )
        except InstanceRejected as rejected:
            log.warning("C-STORE from %s refused: %s", event.assoc.requestor.ae_title, rejected)
            return _status(rejected.status, str(rejected))
        except FhirError as error:
            log.warning("C-STORE could not be recorded in FHIR: %s", error)
            status = OUT_OF_RESOURCES if error.status == 503 else PROCESSING_FAILURE
            return _status(status, str(error)[:64])
        except Exception as exc:  # the SCP must answer, never die on one bad instance
            log.exception("C-STORE failed")
            return _status(PROCESSING_FAILURE, f"{type(exc).__name__}: {exc}"[:64])
        return SUCCESS

    def _query(self, event: Event) -> tuple[str, dict[str, str], list[str]]:
        identifier = event.identifier
        level = str(identifier.get("QueryRetrieveLevel", "")).upper()
        if level not in LEVELS:
            raise QueryError(f"QueryRetrieveLevel {level!r} is not one of {', '.join(LEVELS)}")
        patient_root = event.request.AffectedSOPClassUID in (
            PatientRootQueryRetrieveInformationModelFind,
            PatientRootQueryRetrieveInformationModelMove,
            PatientRootQueryRetrieveInformationModelGet,
        )
        if level == "PATIENT" and not patient_root:
            raise QueryError("The Study Root model has no PATIENT level")
        requested = [
            e.keyword for e in identifier if e.keyword and e.keyword != "QueryRetrieveLevel"
        ]
        return level, identifier_keys(identifier), requested

    def on_find(self, event: Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        """C-FIND: pending responses, one per match, then success (C.4.1.2)."""
        try:
            level, keys, requested = self._query(event)
            matches = self.archive.index.find(self._view(event), level, keys)
        except QueryError as exc:
            yield _status(IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, str(exc)), None
            return
        for match in matches:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, response_identifier(level, requested, match)

    def _datasets(self, event: Event) -> tuple[list[Any], Any]:
        level, keys, _requested = self._query(event)
        instances = self.archive.index.instances_matching(self._view(event), level, keys)
        return instances, level

    def _retrieve(self, instances: list[Any], event: Event) -> Iterator[Any]:
        for instance in instances:
            if event.is_cancelled:
                yield CANCEL, None
                return
            try:
                ds = self.archive.dataset(instance.digest)
            except (OSError, ValueError) as exc:
                log.error("Stored instance %s unreadable: %s", instance.sop_uid, exc)
                yield UNABLE_TO_PROCESS, None
                continue
            yield PENDING, ds

    def _destination_allowed(self, event: Event, destination_aet: str) -> bool:
        """A C-MOVE may send a tenant's instances only to a destination of the same tenant
        (one mapped to it, or acting for it as the default); an all-tenant caller anywhere."""
        caller = self._view(event).tenant
        if caller is None:
            return True
        try:
            return self.config.tenant_of_ae(destination_aet) == caller
        except UnknownAE:
            return False

    def on_move(self, event: Event) -> Iterator[Any]:
        """C-MOVE: destination, number of sub-operations, then the datasets (C.4.2.2)."""
        aet = (event.move_destination or "").strip()
        destination = self.config.destinations.get(aet)
        if destination is not None and not self._destination_allowed(event, aet):
            log.warning(
                "C-MOVE from %s to %r refused: the destination is not of the caller's tenant",
                event.assoc.requestor.ae_title,
                aet,
            )
            destination = None  # answered like an unknown one: nothing to learn from it
        if destination is None:
            log.warning("C-MOVE to unknown destination %r", event.move_destination)
            yield None, None  # pynetdicom answers 0xA801 Move Destination unknown
            return
        try:
            instances, _level = self._datasets(event)
        except QueryError as exc:
            yield destination.host, destination.port
            yield 1  # one failed sub-operation carries the failure status
            yield _status(IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, str(exc)), None
            return
        # The sub-association proposes exactly the SOP classes and syntaxes being sent.
        yield destination.host, destination.port, {"contexts": _contexts(instances)}
        yield len(instances)
        yield from self._retrieve(instances, event)

    def on_get(self, event: Event) -> Iterator[Any]:
        """C-GET: number of sub-operations, then the datasets on this association (C.4.3)."""
        try:
            instances, _level = self._datasets(event)
        except QueryError as exc:
            yield 1  # one failed sub-operation carries the failure status
            yield _status(IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, str(exc)), None
            return
        yield len(instances)
        yield from self._retrieve(instances, event)


def _contexts(instances: list[Any]) -> list[Any]:
    from pynetdicom.presentation import build_context

    syntaxes: dict[str, set[str]] = {}
    for instance in instances:
        syntaxes.setdefault(instance.sop_class_uid, set()).add(instance.transfer_syntax)
    contexts = [build_context(sop, sorted(ts)) for sop, ts in sorted(syntaxes.items())[:128]]
    return contexts or [build_context(Verification)]


def _status(code: int, comment: str) -> Dataset:
    """A status dataset with an Error Comment (PS3.7 C.4: LO, at most 64 characters)."""
    ds = Dataset()
    ds.Status = code
    ds.ErrorComment = comment[:64]
    return ds
