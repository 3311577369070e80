"""DICOMweb for browser viewers (PS3.18): QIDO-RS search, WADO-RS retrieve, STOW-RS store.

Mounted at ``/plugins/dicom/dicomweb`` (the plugin's prefix plus ``/dicomweb``), which is the
address ImagingStudy.endpoint advertises. Search answers from the instance catalogue (no file
is opened), retrieve streams the stored Part 10 files as they were received, and STOW-RS goes
through the same :meth:`DicomArchive.store_part10` as C-STORE, so one rule set holds for both.

Who sees what is decided by the archive's own record (:class:`TenantView`): a caller sees the
instances stored for its tenant (all of them for the system and a hub-wide admin), and a
patient-facing app those the hub recorded under its launch patient. No FHIR resource takes
part in the decision, since a caller who may write an ImagingStudy could name any Study
Instance UID in it. The view is applied in SQL before ``limit``/``offset``.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from fhirhub.adapters.dicom.archive import InstanceRejected, archive_for, read_part10
from fhirhub.adapters.dicom.content_store import StoreUnavailable
from fhirhub.adapters.dicom.frames import frame_parts, parse_frame_list
from fhirhub.adapters.dicom.instance_index import ALL_TENANTS, COLUMN, QueryError, TenantView
from fhirhub.adapters.dicom.render import MEDIA_TYPES, RenderError, Window, render_frame
from fhirhub.sdk import FhirError

if TYPE_CHECKING:
    from fhirhub.sdk import Hub

DICOM_JSON = "application/dicom+json"
DEFAULT_LIMIT = 1000  # QIDO-RS lets the server cap results (PS3.18 8.3.4.4)
EXTRA_RESULT_KEYS = {
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
    "NumberOfSeriesRelatedInstances",
}


def _element(keyword: str) -> tuple[str, str]:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return f"{tag:08X}", dictionary_VR(keyword)


#: keyword -> (tag as 8 hex digits, VR), computed once: the dictionary lookups would
#: otherwise dominate a 1,000-study QIDO answer.
ELEMENTS: dict[str, tuple[str, str]] = {
    keyword: _element(keyword) for keyword in [*COLUMN, *sorted(EXTRA_RESULT_KEYS)]
}
INTEGER_VRS = frozenset(("IS", "US", "UL", "SL", "SS"))


def dicom_json(item: dict[str, Any], base: str) -> dict[str, Any]:
    """A catalogue row as a DICOM JSON object (PS3.18 F.2), with the WADO-RS RetrieveURL."""
    out: dict[str, Any] = {}
    for keyword, value in item.items():
        element = ELEMENTS.get(keyword)
        if element is None:
            continue
        tag, vr = element
        if value is None or value == [] or value == "":
            out[tag] = {"vr": vr}
            continue
        values = value if isinstance(value, list) else [value]
        if vr == "PN":
            values = [{"Alphabetic": str(v)} for v in values]
        elif vr in INTEGER_VRS:
            values = [int(v) for v in values]
        else:
            values = [str(v) for v in values]
        out[tag] = {"vr": vr, "Value": values}
    study, series = item.get("StudyInstanceUID"), item.get("SeriesInstanceUID")
    url = f"{base}/studies/{study}"
    if series:
        url += f"/series/{series}"
        if item.get("SOPInstanceUID"):
            url += f"/instances/{item['SOPInstanceUID']}"
    out["00081190"] = {"vr": "UR", "Value": [url]}
    return dict(sorted(out.items()))


def _query_keys(request: Request) -> tuple[dict[str, str], int, int]:
    """QIDO-RS query parameters: attribute keyword or tag = value, limit, offset
    (PS3.18 8.3.4); ``includefield`` and ``fuzzymatching`` are accepted and ignored."""
    keys: dict[str, str] = {}
    limit, offset = DEFAULT_LIMIT, 0
    for name, value in request.query_params.multi_items():
        if name == "limit":
            limit = max(0, min(int(value), DEFAULT_LIMIT))
        elif name == "offset":
            offset = max(0, int(value))
        elif name in ("includefield", "fuzzymatching"):
            continue
        else:
            keyword = name
            if re.fullmatch(r"[0-9A-Fa-f]{8}", name):
                keyword = keyword_for_tag(int(name, 16)) or name
            if keyword not in COLUMN:
                raise QueryError(f"Unsupported QIDO-RS query key {name!r}")
            keys[keyword] = value
    return keys, limit, offset


def _multipart(parts: list[bytes], media_type: str) -> Response:
    return _multipart_typed([(media_type, part) for part in parts])


def _multipart_typed(parts: list[tuple[str, bytes]]) -> Response:
    """A ``multipart/related`` body; its ``type`` is the first part's media type without
    parameters (frames name their Transfer Syntax in each part's Content-Type)."""
    boundary = uuid.uuid4().hex
    chunks: list[bytes] = []
    for media_type, part in parts:
        chunks.append(f"--{boundary}\r\nContent-Type: {media_type}\r\n\r\n".encode())
        chunks.append(part)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    root_type = parts[0][0].split(";")[0] if parts else "application/octet-stream"
    return Response(
        b"".join(chunks),
        media_type=f'multipart/related; type="{root_type}"; boundary={boundary}',
    )


def parse_multipart(body: bytes, content_type: str) -> list[bytes]:
    """The parts of a ``multipart/related`` body (RFC 2387), headers stripped."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise ValueError("multipart/related body without a boundary")
    delimiter = b"--" + match.group(1).encode()
    parts: list[bytes] = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
        head, sep, payload = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        if payload.endswith(b"\r\n"):
            payload = payload[:-2]
        parts.append(payload)
    return parts


def caller_view() -> TenantView:
    """The part of the archive the current caller sees: its tenant's instances (every
    tenant's for the system and a hub-wide admin), and with a launch patient only those
    recorded under that Patient. Needs read (``r``) on ImagingStudy, as the FHIR API does."""
    from fhirhub.sdk import current_access

    access = current_access()
    if access.is_system:
        return ALL_TENANTS
    access.require("r", "ImagingStudy")
    return TenantView(access.tenant, access.patient)


def stow_tenant() -> str | None:
    """The tenant STOW-RS stores for: the uploader's (its clinicians then see the study; a
    hub-wide admin's and the system's go to the default tenant). Needs create (``c``) on
    ImagingStudy. The archive writes the FHIR side as the system, so a patient-facing app,
    whose writes must stay in its patient's compartment, may not store: the Patient would
    come from the instance's header, not from its token."""
    from fhirhub.sdk import current_access, forbidden

    access = current_access()
    if access.is_system:
        return None
    access.require("c", "ImagingStudy")
    if access.patient is not None:
        raise forbidden("STOW-RS needs a user- or system-level token, not a patient context")
    return access.tenant


def make_router(hub: Hub) -> APIRouter:
    router = APIRouter(prefix="/dicomweb", tags=["DICOMweb"])

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/") + "/plugins/dicom/dicomweb"

    def qido(request: Request, level: str, fixed: dict[str, str]) -> Response:
        view = caller_view()
        try:
            keys, limit, offset = _query_keys(request)
            keys.update(fixed)
            rows = archive_for(hub).index.find(view, level, keys, limit=limit, offset=offset)
        except (QueryError, ValueError) as exc:
            return Response(str(exc), status_code=400, media_type="text/plain")
        if not rows:
            return Response(status_code=204)
        root = base(request)
        payload = [dicom_json({**fixed, **row}, root) for row in rows]
        return Response(orjson.dumps(payload), media_type=DICOM_JSON)

    @router.get("/studies")
    def search_studies(request: Request) -> Response:
        return qido(request, "STUDY", {})

    @router.get("/series")
    def search_all_series(request: Request) -> Response:
        return qido(request, "SERIES", {})

    @router.get("/instances")
    def search_all_instances(request: Request) -> Response:
        return qido(request, "IMAGE", {})

    @router.get("/studies/{study}/series")
    def search_series(study: str, request: Request) -> Response:
        return qido(request, "SERIES", {"StudyInstanceUID": study})

    @router.get("/studies/{study}/instances")
    def search_study_instances(study: str, request: Request) -> Response:
        return qido(request, "IMAGE", {"StudyInstanceUID": study})

    @router.get("/studies/{study}/series/{series}/instances")
    def search_instances(study: str, series: str, request: Request) -> Response:
        return qido(request, "IMAGE", {"StudyInstanceUID": study, "SeriesInstanceUID": series})

    def stored(study: str, series: str | None = None, sop: str | None = None) -> list[Any]:
        """The caller's instances; another tenant's or patient's answer like missing ones."""
        return archive_for(hub).index.instances(caller_view(), study, series, sop)

    def retrieve(study: str, series: str | None = None, sop: str | None = None) -> Response:
        instances = stored(study, series, sop)
        if not instances:
            return Response("No such instances", status_code=404, media_type="text/plain")
        archive = archive_for(hub)
        try:
            files = [archive.read_file(i.digest) for i in instances]
        except StoreUnavailable as exc:
            return _unavailable(exc)
        return _multipart(files, "application/dicom")

    def metadata(study: str, series: str | None = None, sop: str | None = None) -> Response:
        instances = stored(study, series, sop)
        if not instances:
            return Response("No such instances", status_code=404, media_type="text/plain")
        archive = archive_for(hub)
        items = []
        for instance in instances:
            try:
                ds = archive.dataset(instance.digest, stop_before_pixels=True)
            except StoreUnavailable as exc:
                return _unavailable(exc)
            items.append(ds.to_json_dict(bulk_data_threshold=1 << 20))
        return Response(orjson.dumps(items), media_type=DICOM_JSON)

    @router.get("/studies/{study}")
    def retrieve_study(study: str) -> Response:
        return retrieve(study)

    @router.get("/studies/{study}/series/{series}")
    def retrieve_series(study: str, series: str) -> Response:
        return retrieve(study, series)

    @router.get("/studies/{study}/series/{series}/instances/{sop}")
    def retrieve_instance(study: str, series: str, sop: str) -> Response:
        return retrieve(study, series, sop)

    @router.get("/studies/{study}/metadata")
    def study_metadata(study: str) -> Response:
        return metadata(study)

    @router.get("/studies/{study}/series/{series}/metadata")
    def series_metadata(study: str, series: str) -> Response:
        return metadata(study, series)

    @router.get("/studies/{study}/series/{series}/instances/{sop}/metadata")
    def instance_metadata(study: str, series: str, sop: str) -> Response:
        return metadata(study, series, sop)

    def rendered(request: Request, study: str, series: str, sop: str, frame: int) -> Response:
        instances = stored(study, series, sop)
        if not instances:
            return Response("No such instance", status_code=404, media_type="text/plain")
        accept = request.query_params.get("accept") or request.headers.get("accept", "")
        fmt = "jpeg" if "image/jpeg" in accept and "image/png" not in accept else "png"
        try:
            window_value = request.query_params.get("window")
            window = Window.parse(window_value) if window_value else None
            quality = int(request.query_params.get("quality", "90"))
            ds = archive_for(hub).dataset(instances[0].digest)
            body = render_frame(ds, frame, window=window, fmt=fmt, quality=quality)
        except (RenderError, ValueError) as exc:
            return Response(str(exc), status_code=400, media_type="text/plain")
        except StoreUnavailable as exc:
            return _unavailable(exc)
        return Response(body, media_type=MEDIA_TYPES[fmt])

    @router.get("/studies/{study}/series/{series}/instances/{sop}/frames/{frames}")
    def retrieve_frames(
        study: str, series: str, sop: str, frames: str, request: Request
    ) -> Response:
        """Frame pixel data (PS3.18 10.4.1.1.3), one part per frame: what browser viewers
        such as OHIF load images with (:mod:`.frames`)."""
        instances = stored(study, series, sop)
        if not instances:
            return Response("No such instance", status_code=404, media_type="text/plain")
        try:
            numbers = parse_frame_list(frames)
            ds = archive_for(hub).dataset(instances[0].digest)
            parts = frame_parts(ds, numbers, request.headers.get("accept", ""))
        except RenderError as exc:
            return Response(str(exc), status_code=400, media_type="text/plain")
        except StoreUnavailable as exc:
            return _unavailable(exc)
        return _multipart_typed(parts)

    @router.get("/studies/{study}/series/{series}/instances/{sop}/rendered")
    def instance_rendered(study: str, series: str, sop: str, request: Request) -> Response:
        return rendered(request, study, series, sop, 1)

    @router.get("/studies/{study}/series/{series}/instances/{sop}/frames/{frames}/rendered")
    def frame_rendered(
        study: str, series: str, sop: str, frames: str, request: Request
    ) -> Response:
        try:
            frame = int(frames.split(",")[0])
        except ValueError:
            return Response("Frame numbers must be integers", status_code=400)
        return rendered(request, study, series, sop, frame)

    @router.post("/studies")
    async def store_instances(request: Request) -> Response:
        return await stow(request, None)

    @router.post("/studies/{study}")
    async def store_study_instances(study: str, request: Request) -> Response:
        return await stow(request, study)

    async def stow(request: Request, study: str | None) -> Response:
        """STOW-RS (PS3.18 10.5): 200 all stored, 202 some failed, 409 none stored."""
        tenant = stow_tenant()  # first: a refused caller learns nothing about the body
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/related"):
            return Response(
                'STOW-RS expects multipart/related; type="application/dicom"',
                status_code=415,
                media_type="text/plain",
            )
        try:
            parts = parse_multipart(await request.body(), content_type)
        except ValueError as exc:
            return Response(str(exc), status_code=400, media_type="text/plain")
        archive = archive_for(hub)
        root = base(request)
        referenced: list[dict[str, Any]] = []

        def store_for_caller(part: bytes, ds: Any) -> Any:
            return archive.store_part10(part, ds, tenant=tenant)

        failed: list[dict[str, Any]] = []
        for part in parts:
            sop_class = sop_uid = ""
            try:
                ds = read_part10(part)
                sop_class = str(ds.get("SOPClassUID", ""))
                sop_uid = str(ds.get("SOPInstanceUID", ""))
                if study and str(ds.get("StudyInstanceUID", "")) != study:
                    raise InstanceRejected(0xA900, "Study Instance UID differs from the URL")
                result = await _run(store_for_caller, part, ds)
            except InstanceRejected as rejected:
                failed.append(_sop_item(sop_class, sop_uid, failure=rejected.status))
                continue
            except FhirError:
                failed.append(_sop_item(sop_class, sop_uid, failure=0x0110))
                continue
            h = result.headers
            url = f"{root}/studies/{h.study_uid}/series/{h.series_uid}/instances/{h.sop_uid}"
            referenced.append(_sop_item(sop_class, sop_uid, url=url))
        body: dict[str, Any] = {}
        if referenced:
            body["00081199"] = {"vr": "SQ", "Value": referenced}
        if failed:
            body["00081198"] = {"vr": "SQ", "Value": failed}
        status = 200 if not failed else (202 if referenced else 409)
        return Response(orjson.dumps(body), status_code=status, media_type=DICOM_JSON)

    return router


async def _run(function: Any, *args: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(function, *args)


def _sop_item(sop_class: str, sop_uid: str, *, url: str = "", failure: int = 0) -> dict[str, Any]:
    item: dict[str, Any] = {
        "00081150": {"vr": "UI", "Value": [sop_class]} if sop_class else {"vr": "UI"},
        "00081155": {"vr": "UI", "Value": [sop_uid]} if sop_uid else {"vr": "UI"},
    }
    if url:
        item["00081190"] = {"vr": "UR", "Value": [url]}
    if failure:
        item["00081197"] = {"vr": "US", "Value": [failure]}
    return item


def _unavailable(error: StoreUnavailable) -> Response:
    """The object store is out of reach: 503, retry later (RFC 9110 15.6.4)."""
    return Response(
        f"DICOM object store unavailable: {error}",
        status_code=503,
        media_type="text/plain",
        headers={"Retry-After": "10"},
    )
