"""How ``fhirhub serve`` runs uvicorn: its HTTP/1.1 protocol with a deadline on request heads.

uvicorn closes a connection that stays idle after a response (``timeout_keep_alive``), but not
one that has started a request and never finishes its headers: a client sending one header
byte every few seconds ("slowloris") held a connection, and its buffers, for as long as it
liked, and a few thousand of them exhaust the server's file descriptors. Here every request
line and header block must arrive within ``FHIRHUB_HTTP_HEADER_TIMEOUT`` seconds of the
connection opening (or, on a kept-alive connection, of the request's first byte); otherwise the
client gets ``408 Request Timeout`` and the connection is closed (RFC 9110 section 15.5.9).
The time from the end of the headers on (the body, the application) is not limited here:
bodies have their size limit (``FHIRHUB_MAX_BODY_BYTES``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("fhirhub.http")

_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 42\r\n"
    b"connection: close\r\n"
    b"\r\n"
    b"The request headers did not arrive in time"
)


class HeadDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's ``httptools`` protocol (its choice whenever httptools is installed, as the
    ``standard`` extra does) with a timer from the start of each request, or of the
    connection, until its headers are complete; when it fires, the client gets 408 and the
    connection is closed."""

    #: Seconds for a request head: set by ``fhirhub serve``; a worker process that uvicorn
    #: spawns imports the class afresh and reads ``FHIRHUB_HTTP_HEADER_TIMEOUT`` itself.
    timeout: float | None = None

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start_head_deadline()

    def on_headers_complete(self) -> None:
        self._stop_head_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_deadline()
        super().connection_lost(exc)

    def _start_head_deadline(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(_head_timeout(), self._head_too_slow)

    def _stop_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        peer = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.warning(
            "Closing the connection of %s: its request headers did not arrive in time", peer
        )
        self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


def _head_timeout() -> float:
    if HeadDeadlineProtocol.timeout is None:
        from fhirhub.core.settings import load_settings

        HeadDeadlineProtocol.timeout = float(load_settings().http_header_timeout)
    return HeadDeadlineProtocol.timeout


def uvicorn_options(header_timeout: float) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` that install the deadline."""
    HeadDeadlineProtocol.timeout = header_timeout
    return {"http": HeadDeadlineProtocol}


__all__ = ["HeadDeadlineProtocol", "uvicorn_options"]
