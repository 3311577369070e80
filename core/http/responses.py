"""FHIR HTTP responses: media type, version headers, Prefer handling, OperationOutcome errors."""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from fhirhub.fhir_store.errors import FhirError, Issue, operation_outcome
from fhirhub.fhir_store.versions import StoredVersion, http_date, to_microseconds

FHIR_JSON = "application/fhir+json"
MEDIA_TYPE = f"{FHIR_JSON}; charset=utf-8"


def fhir_response(
    body: bytes | dict[str, Any] | None, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    if isinstance(body, dict):
        body = orjson.dumps(body)
    return Response(
        content=body or b"",
        status_code=status,
        media_type=MEDIA_TYPE if body else None,
        headers=headers,
    )


def error_response(error: FhirError) -> Response:
    return fhir_response(error.outcome_bytes(), error.status)


def outcome_response(status: int, severity: str, code: str, diagnostics: str) -> Response:
    return fhir_response(
        orjson.dumps(operation_outcome([Issue(severity, code, diagnostics)])), status
    )


def version_headers(
    version: StoredVersion, base_url: str, *, location: bool = False
) -> dict[str, str]:
    headers = {"ETag": version.etag, "Last-Modified": http_date(version.last_updated)}
    if location:
        headers["Location"] = (
            f"{base_url}/{version.resource_type}/{version.resource_id}/_history/{version.version_id}"
        )
        headers["Content-Location"] = headers["Location"]
    return headers


def prefer(request: Request, key: str) -> str | None:
    """Value of one ``Prefer`` token (``return``, ``handling``), per RFC 7240."""
    for header in request.headers.getlist("prefer"):
        for part in header.split(","):
            name, _, value = part.strip().partition("=")
            if name.strip().lower() == key:
                return value.strip().strip('"').lower() or None
    return None


def write_response(
    request: Request,
    version: StoredVersion,
    status: int,
    base_url: str,
    *,
    location: bool = True,
    issues: tuple[Issue, ...] = (),
) -> Response:
    """Honour ``Prefer: return=minimal|representation|OperationOutcome`` (http.html#ops)."""
    headers = version_headers(version, base_url, location=location)
    wanted = prefer(request, "return") or "representation"
    if wanted == "minimal" or version.content is None:
        return Response(status_code=status, headers=headers)
    if wanted == "operationoutcome":
        text = f"{version.reference} version {version.version_id} stored"
        outcome = operation_outcome([Issue("information", "informational", text), *issues])
        return fhir_response(outcome, status, headers)
    return fhir_response(version.content, status, headers)


def not_modified(request: Request, version: StoredVersion) -> bool:
    """``If-None-Match`` / ``If-Modified-Since`` on reads (http.html#cread)."""
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        tags = {t.strip() for t in if_none_match.split(",")}
        plain = version.etag[2:]
        return "*" in tags or version.etag in tags or plain in tags
    if_modified_since = request.headers.get("if-modified-since")
    if if_modified_since:
        try:
            since = to_microseconds(parsedate_to_datetime(if_modified_since))
        except (TypeError, ValueError):
            return False
        return version.last_updated // 1_000_000 * 1_000_000 <= since
    return False
