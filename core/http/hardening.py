"""HTTP hardening: security headers, CORS, rate limits, and secrets kept out of the logs.

Installed by :func:`fhirhub.core.http.app.create_app` in two places around the
authentication middleware, so that from the outside in a request meets

1. :class:`SecurityHeaders`: every response gets ``X-Content-Type-Options: nosniff``,
   ``Referrer-Policy: no-referrer`` and framing rules (API responses may never be framed; HTML
   pages only by this origin, as the UI shell frames plugin pages), a Content-Security-Policy
   (the shell's same-origin policy for HTML, ``default-src 'none'`` for data), and HSTS when the
   request came over https (uvicorn's own TLS, or a trusted proxy with ``--proxy-headers``);
2. CORS (Starlette's ``CORSMiddleware``) for the origins in ``FHIRHUB_CORS_ORIGINS`` only; with
   none configured no cross-origin browser call is allowed;
3. a rate limit per client address (token bucket, :class:`RateLimit`), before authentication
   so that guessing tokens is throttled too; an address gets :data:`ADDRESS_FACTOR` times the
   per-caller rate, since the users behind one NAT or proxy share it;
4. a NUL character in the path or query is refused (400, :class:`RejectNul`);
5. authentication (:mod:`.access_control`);
6. a rate limit per caller (the token's subject), whatever address it comes from.

A refused request gets 429 with an OperationOutcome (issue code ``throttled``) and
``Retry-After``. Buckets live in memory (one process, the embedded default) or in Redis when
``FHIRHUB_RATE_LIMIT_REDIS`` (or a ``redis://`` ``FHIRHUB_BROKER``) names one, so that every
API process behind a load balancer shares them.

Logs: :func:`install_log_redaction` makes every log record pass through :func:`redact`, which
blanks bearer and basic credentials, ``access_token``, ``client_secret``, ``password`` and
similar values, in query strings, form bodies and JSON alike (uvicorn's access log prints the
query string).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhirhub.core.access import current_access

if TYPE_CHECKING:
    from fastapi import FastAPI

    from fhirhub.core.hub import Hub

log = logging.getLogger("fhirhub.http")

# -- secrets out of the logs -----------------------------------------------------------------

#: Names whose values are secrets wherever they appear (query, form body, JSON, headers).
SECRET_NAMES = (
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "client_assertion",
    "code_verifier",
    "password",
    "passwd",
    "secret",
    "api_key",
    "apikey",
)
_NAMES = "|".join(SECRET_NAMES)
REDACTED = "[redacted]"
_PATTERNS = (
    # Authorization: Bearer xyz / Basic xyz (header dumps, reprs of header lists)
    # (a credential has a digit or a symbol, so "basic validation" in a message stays)
    (
        re.compile(r"(?i)\b(bearer|basic)(\s+)(?=[\w\-.~+/]*[\d\-.~+/])[\w\-.~+/]{8,}=*"),
        rf"\1\2{REDACTED}",
    ),
    # name=value in query strings and form bodies, %3D-encoded too
    (re.compile(rf"(?i)\b({_NAMES})(=|%3D)[^&\s'\"]*"), rf"\1\2{REDACTED}"),
    # "name": "value" in JSON and Python reprs
    (re.compile(rf"""(?i)(["']({_NAMES})["']\s*:\s*["'])[^"']*"""), rf"\1{REDACTED}"),
    # ('authorization', 'Bearer x') / b'authorization': the header as a key-value pair
    (
        re.compile(
            r"""(?i)(b?["'](?:authorization|cookie|proxy-authorization)["']\s*[,:]\s*b?["'])[^"']*"""
        ),
        rf"\1{REDACTED}",
    ),
)


def redact(text: str) -> str:
    """``text`` with credentials and secret values replaced by ``[redacted]``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_query(query: str) -> str:
    """A URL query string with the values of secret parameters redacted."""
    return _PATTERNS[1][0].sub(_PATTERNS[1][1], query) if query else query


class RedactingFilter(logging.Filter):
    """A logging filter (for handlers) that redacts the message and its arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def redact_record(record: logging.LogRecord) -> None:
    if isinstance(record.msg, str):
        record.msg = redact(record.msg)
    if isinstance(record.args, tuple):
        record.args = tuple(_redact_arg(arg) for arg in record.args)
    elif isinstance(record.args, dict):
        record.args = {key: _redact_arg(value) for key, value in record.args.items()}


def _redact_arg(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes | bytearray):
        return redact(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(repr(value) if isinstance(value, dict | list | tuple) else str(value))


_installed = False


def install_log_redaction() -> None:
    """Redact every log record of this process when it is created (idempotent).

    A record factory rather than a handler filter: it covers handlers configured later (uvicorn
    configures its own after the app is built) and loggers that do not propagate.
    """
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redact_record(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


# -- security headers ------------------------------------------------------------------------

#: HTML pages: same-origin scripts, styles, images and frames (the shell frames plugin pages).
HTML_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "frame-src 'self'; frame-ancestors 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'"
)
#: Data (FHIR JSON, images, files): nothing to run and never framed.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
HSTS = "max-age=31536000; includeSubDomains"


class SecurityHeaders:
    """Adds the security headers to every response, keeping any a route set itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                content_type = next(
                    (value for name, value in headers if name.lower() == b"content-type"), b""
                )
                html = content_type.startswith(b"text/html")
                wanted = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"SAMEORIGIN" if html else b"DENY"),
                    (b"content-security-policy", (HTML_CSP if html else API_CSP).encode()),
                ]
                if https:
                    wanted.append((b"strict-transport-security", HSTS.encode()))
                headers.extend((name, value) for name, value in wanted if name not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# -- control characters ----------------------------------------------------------------------

_NUL = re.compile(rb"%00|\x00")


class RejectNul:
    """400 for a NUL character in the path or query: no FHIR string may hold one
    (datatypes.html#string), PostgreSQL cannot store one in text, and SQLite's LIKE stops at
    one (``name:contains=%00`` would match everything)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            _NUL.search(scope.get("query_string", b"")) or "\x00" in scope.get("path", "")
        ):
            from fhirhub.core.http.responses import outcome_response

            text = "NUL characters are not allowed in a request's path or query"
            await outcome_response(400, "error", "invalid", text)(scope, receive, send)
            return
        await self.app(scope, receive, send)


# -- rate limits -----------------------------------------------------------------------------

_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")


@dataclass(frozen=True)
class Rate:
    """``600/minute``: a bucket of 600 tokens refilled at 600 per minute (bursts up to 600)."""

    capacity: int
    per_second: float

    @classmethod
    def parse(cls, text: str) -> Rate | None:
        """The rate, or None for ``off`` (also ``0``, ``none``, empty)."""
        text = text.strip().lower()
        if text in ("", "off", "none", "0", "false", "no"):
            return None
        match = _RATE.match(text)
        unit = _UNITS.get(match[3]) if match else None
        if match is None or unit is None or int(match[1]) <= 0:
            raise ValueError(f"Invalid rate {text!r}: expected e.g. '600/minute', '20/second'")
        period = unit * int(match[2] or 1)
        return cls(int(match[1]), int(match[1]) / period)


class MemoryBuckets:
    """Token buckets in this process (the embedded default: one API process)."""

    #: Forget idle buckets beyond this many keys (a flood of addresses cannot exhaust memory).
    MAX_KEYS = 100_000

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    async def take(self, key: str) -> float:
        return self.take_now(key, time.monotonic())

    def take_now(self, key: str, now: float) -> float:
        """Take a token for ``key``: 0 when allowed, else the seconds until one is available."""
        capacity, refill = self.rate.capacity, self.rate.per_second
        tokens, at = self._buckets.get(key, (float(capacity), now))
        tokens = min(float(capacity), tokens + (now - at) * refill)
        if tokens >= 1:
            self._store(key, tokens - 1, now)
            return 0.0
        self._store(key, tokens, now)
        return (1 - tokens) / refill

    def _store(self, key: str, tokens: float, now: float) -> None:
        if len(self._buckets) >= self.MAX_KEYS and key not in self._buckets:
            full = self.rate.capacity / self.rate.per_second
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full}
        self._buckets[key] = (tokens, now)


#: The same token bucket as :class:`MemoryBuckets`, atomically in Redis (its clock, so API
#: processes on several hosts agree). Returns the wait in seconds as a string.
_REDIS_BUCKET = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 1)
return tostring(wait)
"""


class RedisBuckets:
    """Token buckets shared by every API process through Redis; falls back to memory (and
    logs once a minute) while Redis is unreachable, rather than refusing or allowing all."""

    PREFIX = "fhirhub:ratelimit:"

    def __init__(self, rate: Rate, url: str) -> None:
        import redis.asyncio as redis

        self.rate = rate
        self.url = url
        self._client = redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._script = self._client.register_script(_REDIS_BUCKET)
        self._fallback = MemoryBuckets(rate)
        self._warned = 0.0

    async def take(self, key: str) -> float:
        try:
            wait = await self._script(
                keys=[self.PREFIX + key], args=[self.rate.capacity, self.rate.per_second]
            )
            return float(wait)
        except Exception as exc:  # Redis down: limit this process alone meanwhile
            now = time.monotonic()
            if now - self._warned > 60:
                self._warned = now
                log.warning("Rate limiting in memory: Redis at %s failed (%s)", self.url, exc)
            return await self._fallback.take(key)


Buckets = MemoryBuckets | RedisBuckets


#: A client address gets this many callers' worth: users behind one NAT or proxy share it.
ADDRESS_FACTOR = 4


def make_buckets(hub: Hub, factor: int = 1) -> Buckets | None:
    rate = Rate.parse(hub.settings.rate_limit)
    if rate is None:
        return None
    rate = Rate(rate.capacity * factor, rate.per_second * factor)
    url = hub.settings.rate_limit_redis or (
        hub.settings.broker if hub.settings.broker.startswith(("redis://", "rediss://")) else ""
    )
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisBuckets(rate, url)
    return MemoryBuckets(rate)


#: Paths never limited: load balancers probe health often and from one address.
UNLIMITED_PATHS = ("/healthz",)


class RateLimit:
    """Refuses a request with 429 when its key's bucket is empty; ``key_of`` None passes."""

    def __init__(
        self, app: ASGIApp, buckets: Buckets, key_of: Callable[[Scope], str | None]
    ) -> None:
        self.app = app
        self.buckets = buckets
        self.key_of = key_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        key = self.key_of(scope)
        wait = await self.buckets.take(key) if key is not None else 0.0
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        await too_many_requests(wait)(scope, receive, send)


def too_many_requests(wait: float) -> Any:
    from fhirhub.core.http.responses import outcome_response

    retry = max(1, math.ceil(wait))
    response = outcome_response(429, "error", "throttled", f"Too many requests; retry in {retry} s")
    response.headers["Retry-After"] = str(retry)
    return response


def client_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return f"ip:{client[0]}" if client else None


def caller(_scope: Scope) -> str | None:
    """The authenticated caller (set by the access control middleware outside); the system
    (authentication off, or nobody) is not limited per caller, only per address."""
    access = current_access()
    return None if access.subject == "system" else f"sub:{access.subject}"


# -- installation ----------------------------------------------------------------------------

CORS_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
CORS_HEADERS = [
    "Authorization",
    "Content-Type",
    "Accept",
    "If-Match",
    "If-None-Match",
    "If-None-Exist",
    "If-Modified-Since",
    "Prefer",
    "X-Request-Id",
]
CORS_EXPOSE = ["ETag", "Location", "Content-Location", "Last-Modified", "Retry-After"]


def cors_origins(hub: Hub) -> list[str]:
    return [o.strip().rstrip("/") for o in hub.settings.cors_origins.split(",") if o.strip()]


def install_inner(app: FastAPI, hub: Hub) -> None:
    """Middleware that must run inside authentication: the per-caller rate limit."""
    buckets = make_buckets(hub)
    if buckets is not None:
        app.add_middleware(RateLimit, buckets=buckets, key_of=caller)


def install_outer(app: FastAPI, hub: Hub) -> None:
    """Middleware outside authentication: per-address limit, CORS, headers (outermost)."""
    install_log_redaction()
    app.add_middleware(RejectNul)
    buckets = make_buckets(hub, ADDRESS_FACTOR)
    if buckets is not None:
        app.add_middleware(RateLimit, buckets=buckets, key_of=client_address)
    origins = cors_origins(hub)
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_HEADERS,
            expose_headers=CORS_EXPOSE,
            allow_credentials=False,  # bearer tokens travel in a header, never in cookies
            max_age=600,
        )
    app.add_middleware(SecurityHeaders)
