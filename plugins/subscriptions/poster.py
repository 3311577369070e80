"""The rest-hook POSTs of one delivery worker.

A plain ``http://`` endpoint (no proxy configured for it, no credentials in the URL) is sent
over a kept-alive HTTP/1.1 connection of the standard library, one per host and port: on a
busy hub a notification is a small POST, and httpx's per-request machinery cost several
times the CPU of the request itself, on the interpreter lock the ingest needs. Everything
else (``https://``, a proxy from ``HTTP_PROXY``/``ALL_PROXY``, a URL with user info) goes
through httpx, as before.
"""

from __future__ import annotations

import http.client
import urllib.request
from urllib.parse import urlsplit

import httpx


class PostFailed(Exception):
    """No answer: the connection failed, timed out, or the request could not be made."""


class Poster:
    """POSTs of one thread (not thread-safe: each delivery worker has its own)."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._connections: dict[tuple[str, int], http.client.HTTPConnection] = {}
        self._httpx: httpx.Client | None = None
        self._proxies = urllib.request.getproxies()

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        """POST ``body``; the answer's status code, or :class:`PostFailed`."""
        parts = urlsplit(url)
        host = parts.hostname
        if parts.scheme != "http" or not host or parts.username or self._proxied(host):
            return self._post_httpx(url, body, headers, timeout)
        try:
            port = parts.port or 80
        except ValueError as exc:  # a port out of range
            raise PostFailed(f"{type(exc).__name__}: {exc}") from exc
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        key = (host, port)
        for attempt in (1, 2):
            connection = self._connections.get(key)
            reused = connection is not None and connection.sock is not None
            if connection is None:
                connection = self._connections[key] = http.client.HTTPConnection(
                    host, port, timeout=timeout
                )
            connection.timeout = timeout
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
            try:
                connection.request("POST", target, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                if response.will_close:
                    connection.close()
                return response.status
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                connection.close()
                if reused and attempt == 1:
                    continue  # the receiver closed the kept-alive connection: a fresh one
                raise PostFailed(f"{type(exc).__name__}: {exc}") from exc
            except (OSError, http.client.HTTPException, ValueError) as exc:
                connection.close()
                raise PostFailed(f"{type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    def _proxied(self, host: str) -> bool:
        if not ("http" in self._proxies or "all" in self._proxies):
            return False
        return not urllib.request.proxy_bypass(host)

    def _post_httpx(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        if self._httpx is None:
            self._httpx = httpx.Client(timeout=self._timeout)
        try:
            return self._httpx.post(url, content=body, headers=headers, timeout=timeout).status_code
        except httpx.HTTPError as exc:
            raise PostFailed(f"{type(exc).__name__}: {exc}") from exc
        except (ValueError, TypeError) as exc:  # e.g. a header httpx refuses to send
            raise PostFailed(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()
        if self._httpx is not None:
            self._httpx.close()
            self._httpx = None
