"""The DICOM adapter as a built-in plugin: the listener, DICOMweb, PACS operations, CLI.

Hooks: ``startup`` starts the DICOM listener in a background thread (``FHIRHUB_DICOM_PORT``,
``off`` disables it), ``shutdown`` stops it, ``register_routes`` mounts DICOMweb at
``/plugins/dicom/dicomweb``, ``register_operations`` adds ``$pacs-query`` and
``$pacs-retrieve``, ``register_commands`` adds ``fhirhub dicom ...``, ``health_checks`` reports
whether the listener thread is alive, ``resource_before_write`` keeps Endpoint writes to
admins (an Endpoint names a PACS the hub will connect to: see :mod:`targets`),
``dicom_archive`` gives imaging plugins the archive through the SDK (:mod:`sdk_access`).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from fhirhub.adapters.dicom.archive import archive_for, close_archive, existing_archive
from fhirhub.adapters.dicom.config import DicomConfig, RemoteNode, UnknownAE
from fhirhub.adapters.dicom.targets import TargetRefused, checked_target
from fhirhub.sdk import (
    Access,
    FhirError,
    Hub,
    HubLocal,
    Operation,
    OperationCall,
    WriteContext,
    current_access,
    hookimpl,
    invalid,
)

if TYPE_CHECKING:
    from fhirhub.adapters.dicom.scp import DicomNode

__version__ = "0.1.0"
log = logging.getLogger("fhirhub.dicom")

_NODE: HubLocal[DicomNode] = HubLocal("dicom.node")


def dicom_node(hub: Hub) -> DicomNode | None:
    """The hub's running DICOM listener, if ``startup`` started one."""
    return _NODE.get(hub)


#: Roles that may write Endpoint resources (README: an org_admin manages its PACS Endpoint).
ENDPOINT_WRITERS = ("org_admin", "super_admin")

#: $pacs-query input parameter -> DICOM matching key (PS3.4 C.6.2.1.2).
QUERY_PARAMETERS = {
    "patient": "PatientID",
    "patient-name": "PatientName",
    "accession": "AccessionNumber",
    "study-date": "StudyDate",
    "modality": "ModalitiesInStudy",
    "study": "StudyInstanceUID",
}


def _config(hub: Hub) -> DicomConfig:
    return DicomConfig.from_settings(hub.settings)


#: ``dicom://AET@host:port``: how an Organization's PACS is written in its FHIR Endpoint.
DICOM_ENDPOINT = re.compile(r"^dicom://(?P<aet>[^@/]{1,16})@(?P<host>[^:/]+):(?P<port>\d{1,5})/?$")


def _organization_pacs(hub: Hub, organization: str) -> RemoteNode:
    """The PACS of one Organization (tenant): an active ``Endpoint`` it manages whose address
    is ``dicom://AET@host:port`` (AE title: at most 16 characters, PS3.5 VR AE). The search
    runs as the caller, so another tenant's Endpoint is not found."""
    from fhirhub.sdk import search

    reference = organization if "/" in organization else f"Organization/{organization}"
    endpoints = search(hub, "Endpoint", [("organization", reference), ("status", "active")])
    for endpoint in endpoints:
        match = DICOM_ENDPOINT.match(str(endpoint.get("address", "")))
        if match:
            return RemoteNode(match["aet"], match["host"], int(match["port"]))
    raise FhirError(
        404,
        f"{reference} has no active Endpoint with a dicom://AET@host:port address",
        code="not-found",
    )


def _pacs_for(call: OperationCall) -> RemoteNode:
    """The checked PACS of the call: the named Organization's Endpoint, which must be on
    ``pacs_allowed``, or the configured ``pacs``; never this hub itself (403)."""
    hub = call.hub
    config = _config(hub)
    organizations = _values(call, "organization")
    if organizations:
        node, allow_list = _organization_pacs(hub, organizations[0]), config.pacs_allowed
    else:
        node, allow_list = _pacs(hub), None
    try:
        return checked_target(
            node, own_aet=config.aet, own_port=_own_port(hub), allow_list=allow_list
        )
    except TargetRefused as exc:
        log.warning("PACS target refused: %s", exc)
        raise FhirError(403, str(exc), code="forbidden") from exc


def _own_port(hub: Hub) -> int | None:
    """The port of this hub's DICOM listener: the bound one, else the configured one (the
    listener may run in another worker process of the same hub)."""
    node = _NODE.get(hub)
    server = node.server if node is not None else None
    if server is not None:
        return int(server.server_address[1])
    return _config(hub).port


def _organization_id(call: OperationCall) -> str | None:
    organizations = _values(call, "organization")
    return organizations[0].rpartition("/")[2] if organizations else None


def _pacs(hub: Hub) -> RemoteNode:
    pacs = _config(hub).pacs
    if pacs is None:
        raise FhirError(
            400,
            "No remote PACS is configured: set [plugin.dicom] pacs = {aet, host, port}",
            code="not-supported",
        )
    return pacs


@hookimpl
def startup(hub: Hub) -> None:
    from fhirhub.adapters.dicom.scp import DicomNode

    config = _config(hub)
    archive = archive_for(hub)
    if config.port is None or not hub.settings.listeners:
        log.info("DICOM listener is off (FHIRHUB_DICOM_PORT=off or FHIRHUB_LISTENERS=off)")
        return
    node = DicomNode(archive, config)
    try:
        node.start()
    except OSError as exc:
        # e.g. a second uvicorn worker: one process owns the port; this one serves HTTP only
        log.error("DICOM listener not started on port %s: %s", config.port, exc)
        return
    _NODE.set(hub, node)


@hookimpl
def shutdown(hub: Hub) -> None:
    node = _NODE.pop(hub)
    if node is not None:
        node.stop()
    close_archive(hub)


@hookimpl
def health_checks(hub: Hub) -> list[tuple[str, Any]] | None:
    checks: list[tuple[str, Any]] = []
    node = _NODE.get(hub)
    if node is not None:
        checks.append(("dicom-listener", lambda: node.running))
    archive = existing_archive(hub)
    if archive is not None:
        checks.append(("dicom-store", archive.files.check))  # S3: the bucket answers
    return checks or None


@hookimpl
def dicom_archive(hub: Hub) -> Any:
    """The archive for imaging plugins (``fhirhub.sdk.dicom_instances`` and siblings), with
    DICOMweb's visibility rules; opened on first use, so Celery workers have it too."""
    from fhirhub.adapters.dicom.sdk_access import ArchiveAccess

    return ArchiveAccess(archive_for(hub))


@hookimpl
def public_paths(hub: Hub) -> list[str]:
    """The viewer pages are shells (no data in them) loaded into frames, which cannot send a
    bearer token; their scripts fetch DICOMweb and FHIR with the signed-in user's token."""
    return ["/plugins/dicom/ui/"]


@hookimpl
def register_routes(hub: Hub) -> Any:
    from fhirhub.adapters.dicom.annotations import make_annotations_router
    from fhirhub.adapters.dicom.dicomweb import make_router
    from fhirhub.adapters.dicom.viewer import make_viewer_router

    return [make_router(hub), make_annotations_router(hub), make_viewer_router()]


@hookimpl
def resource_before_write(resource: dict[str, Any], context: WriteContext) -> None:
    """Endpoints are written by admins only: ``$pacs-query``/``$pacs-retrieve`` connect to
    the PACS an Organization's Endpoint names. The system (this adapter's own ``dicom-wado-rs``
    Endpoint, loaders) is not limited; an unprivileged caller gets 403."""
    if context.resource_type != "Endpoint":
        return
    access: Access = current_access()
    if access.scopes is None:  # the system, possibly acting for a tenant
        return
    access.require_role(*ENDPOINT_WRITERS)


@hookimpl
def ui_patient_panels(hub: Hub) -> list[dict[str, Any]]:
    """Thumbnails of the patient's studies, each opening the series viewer."""
    return [
        {
            "id": "dicom-imaging",
            "title": "Imaging (DICOM)",
            "order": 75,
            "url": "/plugins/dicom/ui/patient/{patient_id}",
        }
    ]


# -- operations -------------------------------------------------------------------------------


def _values(call: OperationCall, name: str) -> list[str]:
    values = list(call.parameters.get(name, []))
    if call.body and call.body.get("resourceType") == "Parameters":
        for parameter in call.body.get("parameter", []):
            if parameter.get("name") == name:
                values += [str(v) for k, v in parameter.items() if k.startswith("value")]
    return values


def _pacs_query(call: OperationCall) -> dict[str, Any]:
    """``$pacs-query``: study-level C-FIND at the configured PACS; one ``study`` part each."""
    from fhirhub.adapters.dicom.scu import PacsError, find_studies

    criteria = {}
    for name, keyword in QUERY_PARAMETERS.items():
        values = _values(call, name)
        if values:
            criteria[keyword] = "\\".join(values) if keyword.endswith("UID") else values[0]
    if not criteria:
        raise invalid(f"$pacs-query needs at least one of: {', '.join(QUERY_PARAMETERS)}")
    try:
        matches = find_studies(_pacs_for(call), criteria, calling_aet=_config(call.hub).aet)
    except PacsError as exc:
        raise FhirError(502, str(exc), code="transient") from exc
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": "study", "part": _study_parts(m)} for m in matches],
    }


def _study_parts(match: dict[str, Any]) -> list[dict[str, Any]]:
    names = {
        "StudyInstanceUID": "study",
        "PatientID": "patient",
        "PatientName": "patient-name",
        "StudyDate": "study-date",
        "AccessionNumber": "accession",
        "StudyDescription": "description",
        "NumberOfStudyRelatedSeries": "number-of-series",
        "NumberOfStudyRelatedInstances": "number-of-instances",
    }
    parts: list[dict[str, Any]] = []
    for keyword, name in names.items():
        if keyword in match:
            value = match[keyword]
            key = "valueInteger" if isinstance(value, int) else "valueString"
            parts.append({"name": name, key: value})
    modalities = match.get("ModalitiesInStudy")
    for modality in [modalities] if isinstance(modalities, str) else modalities or []:
        parts.append({"name": "modality", "valueString": modality})
    return parts


def _pacs_retrieve(call: OperationCall) -> dict[str, Any]:
    """``$pacs-retrieve``: C-MOVE (or C-GET) studies from the PACS and import them."""
    from fhirhub.adapters.dicom.scu import PacsError, retrieve

    studies = _values(call, "study")
    if not studies:
        raise invalid("$pacs-retrieve needs one or more 'study' (Study Instance UID) parameters")
    method = (_values(call, "method") or ["move"])[0]
    if method not in ("move", "get"):
        raise invalid("method must be 'move' or 'get'")
    hub = call.hub
    if method == "move" and _NODE.get(hub) is None:
        raise FhirError(
            409, "C-MOVE needs the DICOM listener running; use method=get", code="conflict"
        )
    pacs = _pacs_for(call)
    tenant = _arrival_tenant(call, pacs, method)
    try:
        result = retrieve(
            archive_for(hub),
            pacs,
            studies,
            own_aet=_config(hub).aet,
            method=method,
            tenant=tenant,
        )
    except PacsError as exc:
        raise FhirError(502, str(exc), code="transient") from exc
    parameters: list[dict[str, Any]] = [
        {"name": "completed", "valueInteger": result.completed},
        {"name": "failed", "valueInteger": result.failed},
    ]
    parameters += [
        {"name": "imagingStudy", "valueReference": {"reference": ref}}
        for ref in result.imaging_studies
    ]
    return {"resourceType": "Parameters", "parameter": parameters}


def _arrival_tenant(call: OperationCall, pacs: RemoteNode, method: str) -> str | None:
    """The tenant the retrieved instances are stored for: the caller's (a hub-wide admin's:
    the ``organization`` named, else the default tenant). C-GET stores them so itself; with
    C-MOVE they arrive on the listener from the PACS's AE title, whose ``tenants`` entry
    decides, so it must be the caller's tenant or the instances would land elsewhere."""
    access = current_access()
    tenant = access.tenant if access.tenant is not None else _organization_id(call)
    if method != "move":
        return tenant
    try:
        arrives_for = _config(call.hub).tenant_of_ae(pacs.aet)
    except UnknownAE as exc:
        raise FhirError(
            409,
            f"The DICOM listener refuses {pacs.aet}, which would send the C-MOVE's instances: "
            "add it to [plugin.dicom] tenants, or use method=get",
            code="conflict",
        ) from exc
    if access.tenant is not None and arrives_for != access.tenant:
        raise FhirError(
            409,
            f"C-MOVE from {pacs.aet} stores for the tenant its AE title maps to in "
            f"[plugin.dicom] tenants, not for {access.tenant}; map it or use method=get",
            code="conflict",
        )
    return arrives_for


@hookimpl
def register_operations(hub: Hub) -> list[Operation]:
    string = {"min": 0, "max": "*", "type": "string", "use": "in"}
    return [
        Operation(
            "pacs-query",
            _pacs_query,
            system=True,
            description="C-FIND the configured PACS for studies (study-level, Study Root)",
            parameters=tuple({"name": n, **string} for n in QUERY_PARAMETERS)
            + ({"name": "study", "use": "out", "min": 0, "max": "*"},),
        ),
        Operation(
            "pacs-retrieve",
            _pacs_retrieve,
            system=True,
            affects_state=True,
            description="C-MOVE (or C-GET) studies from the configured PACS and import them "
            "as ImagingStudy",
            parameters=(
                {"name": "study", "use": "in", "min": 1, "max": "*", "type": "string"},
                {"name": "method", "use": "in", "min": 0, "max": "1", "type": "code"},
                {"name": "imagingStudy", "use": "out", "min": 0, "max": "*", "type": "Reference"},
            ),
        ),
    ]


# -- CLI --------------------------------------------------------------------------------------


@hookimpl
def register_commands(cli: Any) -> None:
    from fhirhub.adapters.dicom.cli import dicom_app

    cli.add_typer(dicom_app, name="dicom")
