"""Authentication at the door: every HTTP request gets an :class:`Access` before routing.

A pure ASGI middleware (not ``BaseHTTPMiddleware``) so the context variable it sets is the one
the endpoint and its thread-pool work see, and streaming bodies pass through untouched.

With ``FHIRHUB_AUTH=on`` (the default) a request to a protected path must be accepted by an
``authenticate_request`` hook, otherwise it gets 401 with ``WWW-Authenticate: Bearer``
(RFC 6750 §3). With ``off`` every request runs as the system: for local development only, and
``fhirhub serve`` refuses it on a non-loopback address. Once the response status is known and
before the response starts, the ``request_completed`` hook receives what happened, which feeds
the audit trail: a request is not answered before its audit record is journaled.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhirhub.core.access import SYSTEM, Access, acting_as
from fhirhub.core.http.hardening import redact_query
from fhirhub.core.http.responses import error_response
from fhirhub.core.interactions import urls
from fhirhub.core.plugins import call_hook
from fhirhub.fhir_store.errors import FhirError

if TYPE_CHECKING:
    from fhirhub.core.hub import Hub

log = logging.getLogger("fhirhub.access")

#: Paths every caller may reach: discovery, health, the front page. Plugins add theirs with
#: ``public_paths`` (the UI shell: its pages, whose data comes from the protected API).
CORE_PUBLIC_PATHS = (
    "/healthz",
    "/fhir/metadata",
    "/fhir/.well-known/",
    "/.well-known/",
    "/favicon.ico",
)


def auth_enabled(hub: Hub) -> bool:
    return hub.settings.auth_enabled


class AccessControl:
    """The ASGI middleware; see the module docstring."""

    def __init__(self, app: ASGIApp, hub: Hub) -> None:
        self.app = app
        self.hub = hub
        self.enabled = auth_enabled(hub)
        extra: list[str] = []
        for _plugin, paths in call_hook(hub, "public_paths", hub=hub):
            extra.extend(paths or ())
        self.public = CORE_PUBLIC_PATHS + tuple(extra)

    def is_public(self, path: str) -> bool:
        if path == "/":
            return True
        return any(path == p.rstrip("/") or path.startswith(p) for p in self.public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.time_ns() // 1000
        path: str = scope.get("path", "")
        request = Request(scope)
        access: Access | None
        try:
            access = self._authenticate(request, path)
        except FhirError as error:
            response = error_response(error)
            if error.status == 401:
                response.headers["WWW-Authenticate"] = _challenge(error)
            self._completed(request, None, error.status, started)
            await response(scope, receive, send)
            return
        audit = self.enabled and not self.is_public(path)
        reported = not audit

        async def send_status(message: Message) -> None:
            nonlocal reported
            if message["type"] == "http.response.start" and not reported:
                reported = True
                location: str | None = None
                for key, value in message.get("headers", ()):
                    if key.lower() == b"location":
                        location = value.decode("latin-1")
                self._completed(request, access, int(message["status"]), started, location)
            await send(message)

        with acting_as(access or SYSTEM):
            try:
                await self.app(scope, receive, send_status)
            finally:
                if not reported:  # failed before answering: the server error is recorded
                    self._completed(request, access, 500, started)

    def _authenticate(self, request: Request, path: str) -> Access | None:
        if not self.enabled:
            return SYSTEM
        access: Access | None = self.hub.hook.authenticate_request(request=request, hub=self.hub)
        if access is None and not self.is_public(path):
            raise FhirError(
                401, "Authentication required: send an OAuth 2 bearer token", code="login"
            )
        return access

    def _completed(
        self,
        request: Request,
        access: Access | None,
        status: int,
        started: int,
        location: str | None = None,
    ) -> None:
        record: dict[str, Any] = {
            "access": access,
            "method": request.method,
            "path": request.url.path,
            "query": redact_query(request.url.query),
            "status": status,
            "remote": request.client.host if request.client else None,
            "started": started,
            "duration_ms": (time.time_ns() // 1000 - started) / 1000,
            **classify(request.method, request.url.path),
            "location": location,
        }
        if record["resource_id"] is None and location and record["resource_type"]:
            # A create names its new resource only in the response: Type/id/_history/v.
            parts = location.split("/")
            if record["resource_type"] in parts:
                index = len(parts) - 1 - parts[::-1].index(record["resource_type"])
                if index + 1 < len(parts):
                    record["resource_id"] = parts[index + 1]
        try:
            self.hub.hook.request_completed(record=record, hub=self.hub)
        except Exception:  # an audit consumer must never turn a served request into a 500
            log.exception("request_completed hook failed")


def _challenge(error: FhirError) -> str:
    text = error.message.replace('"', "'")
    if any(word in text.lower() for word in ("expired", "invalid", "revoked", "signature")):
        return f'Bearer error="invalid_token", error_description="{text}"'
    return 'Bearer realm="fhirhub"'


def classify(method: str, path: str) -> dict[str, Any]:
    """The FHIR interaction a request is (http://hl7.org/fhir/R4/http.html), read with the REST
    API's own grammar (:mod:`fhirhub.core.interactions.urls`), with the type and id it names;
    ``http`` for paths outside ``/fhir``."""
    if not (path == "/fhir" or path.startswith("/fhir/")):
        return {"interaction": "http", "resource_type": None, "resource_id": None}
    request = urls.parse(method, path)
    return {
        "interaction": request.interaction or "http",
        "resource_type": request.resource_type,
        "resource_id": request.resource_id,
    }
