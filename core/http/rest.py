"""The FHIR RESTful API under ``/fhir`` (http://hl7.org/fhir/R4/http.html).

Handlers translate HTTP into calls of the interactions layer and back; the FHIR semantics live
in :mod:`fhirhub.core.interactions`. Database work runs in the thread pool so the event loop
stays free for other requests.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fhirhub.core.capability import capability_statement
from fhirhub.core.http.responses import (
    FHIR_JSON,
    fhir_response,
    not_modified,
    outcome_response,
    prefer,
    version_headers,
    write_response,
)
from fhirhub.core.hub import Hub
from fhirhub.core.interactions import read as reads
from fhirhub.core.interactions import urls
from fhirhub.core.interactions import write as writes
from fhirhub.core.interactions.bundle import process_bundle
from fhirhub.core.interactions.checks import require_type
from fhirhub.core.interactions.search import search_bundle
from fhirhub.core.operations import OperationCall
from fhirhub.fhir_store.errors import FhirError, invalid

JSON_TYPES = (
    "application/fhir+json",
    "application/json",
    "application/json-patch+json",
    "text/plain",
)
XML_TYPES = ("application/fhir+xml", "application/xml", "text/xml")
FORM = "application/x-www-form-urlencoded"


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def base_url_of(request: Request) -> str:
    hub = hub_of(request)
    if hub.base_url:
        return hub.base_url
    return str(request.base_url).rstrip("/") + "/fhir"


def media_type(request: Request, default: str = "") -> str:
    """The request's Content-Type without parameters, lower case (``default`` when absent)."""
    return request.headers.get("content-type", default).split(";")[0].strip().lower()


async def read_json(request: Request) -> Any:
    """The request body as JSON, with the size limit and a clear error for anything else."""
    if media_type(request, FHIR_JSON) in XML_TYPES:
        raise FhirError(415, "Only JSON is supported (application/fhir+json)", code="not-supported")
    raw = await read_body(request)
    if not raw.strip():
        raise invalid("The request body is empty")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FhirError(400, f"Malformed JSON: {exc}", code="structure") from exc


async def read_body(request: Request) -> bytes:
    """The request body's bytes, refused with 413 past ``FHIRHUB_MAX_BODY_BYTES`` (checked on
    the declared length first, then while reading, so an oversized body is never buffered)."""
    limit = hub_of(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise FhirError(413, f"Request body exceeds {limit} bytes", code="too-costly")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise FhirError(413, f"Request body exceeds {limit} bytes", code="too-costly")
        chunks.append(chunk)
    return b"".join(chunks)


async def search_criteria(request: Request) -> list[tuple[str, str]]:
    """The criteria of ``POST [base]/_search`` and ``POST [type]/_search``: the query string
    plus the body, which http://hl7.org/fhir/R4/http.html#search defines as
    ``application/x-www-form-urlencoded``. A body in any other form (JSON, FHIR JSON, text, no
    Content-Type) is refused with 415 rather than ignored: ignoring it would answer an
    unfiltered search as if it were the one asked for."""
    params = query_params(request)
    raw = await read_body(request)
    if not raw.strip():
        return params
    content_type = media_type(request)
    if content_type != FORM:
        sent = f"{content_type!r}" if content_type else "a body without Content-Type"
        raise FhirError(
            415,
            f"POST _search takes its criteria as {FORM} (or in the URL), not {sent}",
            code="not-supported",
        )
    try:
        form = parse_qsl(
            raw.decode("utf-8"), keep_blank_values=True, strict_parsing=True, errors="strict"
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise invalid(f"Malformed {FORM} body: {exc}") from exc
    return params + [(k, v) for k, v in form if k not in ("_format", "_pretty")]


def query_params(request: Request) -> list[tuple[str, str]]:
    return [
        (k, v) for k, v in request.query_params.multi_items() if k not in ("_format", "_pretty")
    ]


def handling_strict(request: Request) -> bool:
    return prefer(request, "handling") == "strict"


async def metadata(request: Request) -> Response:
    hub = hub_of(request)
    statement = await run_in_threadpool(capability_statement, hub, base_url_of(request))
    return fhir_response(statement)


async def system_bundle(request: Request) -> Response:
    hub = hub_of(request)
    body = await read_json(request)
    return_pref = prefer(request, "return") or "minimal"
    result = await run_in_threadpool(
        process_bundle, hub, body, base_url=base_url_of(request), return_pref=return_pref
    )
    return fhir_response(result)


async def system_search(request: Request) -> Response:
    return await _search(request, None, query_params(request))


async def system_search_post(request: Request) -> Response:
    return await _search(request, None, await search_criteria(request))


async def system_history(request: Request) -> Response:
    return await _history(request, None, None)


async def _history(
    request: Request, resource_type: str | None, resource_id: str | None
) -> Response:
    hub = hub_of(request)
    params = query_params(request)

    def run() -> bytes:
        with hub.store.read() as conn:
            return reads.history_bundle(
                conn, base_url_of(request), params, resource_type, resource_id
            )

    return fhir_response(await run_in_threadpool(run))


# -- operations -------------------------------------------------------------------------------


async def _operation(
    request: Request, level: str, resource_type: str | None, resource_id: str | None, name: str
) -> Response:
    hub = hub_of(request)
    operation = hub.operations.find(name, level, resource_type)
    if resource_type is not None:
        require_type(resource_type)
    operation.authorize(resource_type)
    body: dict[str, Any] | None = None
    parameters: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        parameters.setdefault(key, []).append(value)
    if request.method == "POST":
        posted = await read_json(request)
        if not isinstance(posted, dict):
            raise invalid("An operation body must be a resource (usually Parameters)")
        body = posted
        if posted.get("resourceType") == "Parameters":
            given = posted.get("parameter", [])
            if not isinstance(given, list) or not all(isinstance(p, dict) for p in given):
                raise invalid("Parameters.parameter must be a list of parameters")
            for parameter in given:
                for key, value in parameter.items():
                    if key.startswith("value"):
                        parameters.setdefault(parameter.get("name", ""), []).append(str(value))
    elif operation.affects_state:
        raise FhirError(
            405, f"${name} changes state and must be invoked with POST", code="not-supported"
        )
    call = OperationCall(hub, resource_type, resource_id, parameters, body, base_url_of(request))
    result = await run_in_threadpool(operation.handler, call)
    return fhir_response(result if isinstance(result, bytes | dict) else orjson.dumps(result))


async def system_operation(request: Request, name: str) -> Response:
    return await _operation(request, "system", None, None, name)


async def type_operation(request: Request, resource_type: str, name: str) -> Response:
    return await _operation(request, "type", resource_type, None, name)


async def instance_operation(
    request: Request, resource_type: str, resource_id: str, name: str
) -> Response:
    return await _operation(request, "instance", resource_type, resource_id, name)


# -- type level -------------------------------------------------------------------------------


async def type_search(request: Request, resource_type: str) -> Response:
    return await _search(request, resource_type, query_params(request))


async def type_search_post(request: Request, resource_type: str) -> Response:
    return await _search(request, resource_type, await search_criteria(request))


async def _search(
    request: Request,
    resource_type: str | None,
    params: list[tuple[str, str]],
    compartment: tuple[str, str] | None = None,
) -> Response:
    hub = hub_of(request)

    def run() -> bytes:
        with hub.store.read() as conn:
            return search_bundle(
                hub,
                conn,
                resource_type,
                params,
                base_url=base_url_of(request),
                strict=handling_strict(request),
                compartment=compartment,
            )

    return fhir_response(await run_in_threadpool(run))


async def create(request: Request, resource_type: str) -> Response:
    hub = hub_of(request)
    body = await read_json(request)
    if_none_exist = request.headers.get("if-none-exist")

    def run() -> writes.WriteResult:
        with hub.store.unit_of_work() as uow:
            return writes.create(hub, uow, resource_type, body, if_none_exist=if_none_exist)

    result = await run_in_threadpool(run)
    return write_response(request, result.version, result.status, base_url_of(request))


def _criteria(request: Request, verb: str) -> str:
    """The search criteria of a conditional update or delete (``Type?...``); 405 without."""
    if not request.url.query:
        raise FhirError(
            405, f"{verb} needs an id (Type/id) or search criteria (Type?...)", code="not-supported"
        )
    return request.url.query


async def conditional_update(request: Request, resource_type: str) -> Response:
    hub = hub_of(request)
    query = _criteria(request, "PUT")
    body = await read_json(request)
    if_match = request.headers.get("if-match")

    def run() -> writes.WriteResult:
        with hub.store.unit_of_work() as uow:
            return writes.conditional_update(
                hub, uow, resource_type, query, body, if_match=if_match
            )

    result = await run_in_threadpool(run)
    return write_response(request, result.version, result.status, base_url_of(request))


async def conditional_delete(request: Request, resource_type: str) -> Response:
    hub = hub_of(request)
    query = _criteria(request, "DELETE")

    def run() -> writes.WriteResult | None:
        with hub.store.unit_of_work() as uow:
            return writes.conditional_delete(hub, uow, resource_type, query)

    result = await run_in_threadpool(run)
    if result is None:
        return outcome_response(
            200, "information", "informational", "No resource matched; nothing deleted"
        )
    return Response(status_code=204, headers={"ETag": result.version.etag})


async def type_history(request: Request, resource_type: str) -> Response:
    return await _history(request, resource_type, None)


# -- instance level ---------------------------------------------------------------------------


def _version_response(request: Request, version: Any) -> Response:
    """A read or vread: the stored bytes, ETag/Last-Modified, or 304 when not modified."""
    headers = version_headers(version, base_url_of(request))
    if not_modified(request, version):
        return Response(status_code=304, headers=headers)
    return fhir_response(version.content, 200, headers)


async def read(request: Request, resource_type: str, resource_id: str) -> Response:
    hub = hub_of(request)

    def run() -> Any:
        with hub.store.read() as conn:
            return reads.read(conn, resource_type, resource_id)

    return _version_response(request, await run_in_threadpool(run))


async def _instance_write(
    request: Request,
    operation: Any,
    resource_type: str,
    resource_id: str,
    body: Any,
    *,
    location_when_created: bool,
) -> Response:
    """Update and patch: run the interaction on ``body`` with ``If-Match``, answer per
    ``Prefer`` (``Location`` only when an update created the resource)."""
    hub = hub_of(request)
    if_match = request.headers.get("if-match")

    def run() -> writes.WriteResult:
        with hub.store.unit_of_work() as uow:
            result: writes.WriteResult = operation(
                hub, uow, resource_type, resource_id, body, if_match=if_match
            )
            return result

    result = await run_in_threadpool(run)
    return write_response(
        request,
        result.version,
        result.status,
        base_url_of(request),
        location=location_when_created and result.created,
    )


async def update(request: Request, resource_type: str, resource_id: str) -> Response:
    body = await read_json(request)
    return await _instance_write(
        request, writes.update, resource_type, resource_id, body, location_when_created=True
    )


async def patch(request: Request, resource_type: str, resource_id: str) -> Response:
    return await _instance_write(
        request,
        writes.patch,
        resource_type,
        resource_id,
        await read_patch(request),
        location_when_created=False,
    )


async def read_patch(request: Request) -> Any:
    """The body of a PATCH (http://hl7.org/fhir/R4/http.html#patch). JSON Patch is supported;
    XML Patch and FHIRPath Patch (a ``Parameters`` resource, sent as FHIR JSON) are answered
    415 with what to send instead, so a client learns the format is the problem."""
    content_type = media_type(request)
    if content_type in XML_TYPES or content_type == "application/xml-patch+xml":
        raise writes.unsupported_patch("XML Patch")
    body = await read_json(request)
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        raise writes.unsupported_patch("FHIRPath Patch (a Parameters resource)")
    if not isinstance(body, list) and content_type != writes.JSON_PATCH:
        raise writes.unsupported_patch(f"A {content_type or 'untyped'} body")
    return body


async def delete(request: Request, resource_type: str, resource_id: str) -> Response:
    hub = hub_of(request)

    def run() -> writes.WriteResult | None:
        with hub.store.unit_of_work() as uow:
            return writes.delete(hub, uow, resource_type, resource_id)

    result = await run_in_threadpool(run)
    headers = {"ETag": result.version.etag} if result is not None else {}
    return Response(status_code=204, headers=headers)


async def instance_history(request: Request, resource_type: str, resource_id: str) -> Response:
    return await _history(request, resource_type, resource_id)


async def vread(
    request: Request, resource_type: str, resource_id: str, version_id: str
) -> Response:
    hub = hub_of(request)

    def run() -> Any:
        with hub.store.read() as conn:
            return reads.vread(conn, resource_type, resource_id, version_id)

    return _version_response(request, await run_in_threadpool(run))


async def compartment_search(
    request: Request, resource_type: str, resource_id: str, compartment: str
) -> Response:
    """``GET [base]/Patient/123/Observation``: the first two segments name the compartment,
    the third the type searched in it (``*``: every type)."""
    compartment_type, compartment_id, resource_type = resource_type, resource_id, compartment
    if compartment_type != "Patient":
        raise FhirError(
            400,
            f"Compartment {compartment_type!r} is not supported (Patient is)",
            code="not-supported",
        )
    target = None if resource_type == "*" else resource_type
    hub = hub_of(request)
    params = query_params(request)

    def run() -> bytes:
        with hub.store.read() as conn:
            reads.read(conn, compartment_type, compartment_id)
            if target is None:
                return search_bundle(
                    hub,
                    conn,
                    None,
                    params,
                    base_url=base_url_of(request),
                    strict=handling_strict(request),
                    compartment=(compartment_type, compartment_id),
                )
            return search_bundle(
                hub,
                conn,
                target,
                params,
                base_url=base_url_of(request),
                strict=handling_strict(request),
                compartment=(compartment_type, compartment_id),
            )

    return fhir_response(await run_in_threadpool(run))


#: The handler of each route of the FHIR URL grammar (:data:`urls.ROUTES`), by path template
#: and method. The router is built from the grammar, so a URL the REST API serves means the
#: same interaction in a Bundle entry and in the audit trail.
HANDLERS: dict[tuple[str, str], Any] = {
    ("", "GET"): system_search,
    ("", "POST"): system_bundle,
    ("/metadata", "GET"): metadata,
    ("/_search", "POST"): system_search_post,
    ("/_history", "GET"): system_history,
    ("/${name}", "GET"): system_operation,
    ("/${name}", "POST"): system_operation,
    ("/{type}", "GET"): type_search,
    ("/{type}", "POST"): create,
    ("/{type}", "PUT"): conditional_update,
    ("/{type}", "DELETE"): conditional_delete,
    ("/{type}/_search", "POST"): type_search_post,
    ("/{type}/_history", "GET"): type_history,
    ("/{type}/${name}", "GET"): type_operation,
    ("/{type}/${name}", "POST"): type_operation,
    ("/{type}/{id}", "GET"): read,
    ("/{type}/{id}", "PUT"): update,
    ("/{type}/{id}", "PATCH"): patch,
    ("/{type}/{id}", "DELETE"): delete,
    ("/{type}/{id}/_history", "GET"): instance_history,
    ("/{type}/{id}/_history/{vid}", "GET"): vread,
    ("/{type}/{id}/${name}", "GET"): instance_operation,
    ("/{type}/{id}/${name}", "POST"): instance_operation,
    ("/{type}/{id}/{compartment}", "GET"): compartment_search,
}

#: The grammar's placeholders as the handlers' parameter names.
_PARAMETERS = {
    "{type}": "{resource_type}",
    "{id}": "{resource_id}",
    "{vid}": "{version_id}",
    "{compartment}": "{compartment}",
    "${name}": "${name}",
}


def _router_path(template: str) -> str:
    for placeholder, parameter in _PARAMETERS.items():
        template = template.replace(placeholder, parameter)
    return template


def build_router() -> APIRouter:
    """The ``/fhir`` router: every route of :data:`urls.ROUTES`, in the grammar's order (the
    first template that matches wins, as in :func:`urls.parse`), each method to its handler."""
    built = APIRouter()
    for template, methods in urls.ROUTES:
        paths = ["", "/"] if template == "" else [_router_path(template)]
        for method in methods:
            for path in paths:
                built.add_api_route(path, HANDLERS[(template, method)], methods=[method])
    return built


router = build_router()
