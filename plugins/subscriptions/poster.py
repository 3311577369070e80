"""The rest-hook POSTs of one delivery worker.

A plain ``http://`` endpoint (no proxy configured for it, no credentials in the URL) is sent
over a kept-alive HTTP/1.1 connection of the standard library, one per host and port: on a
busy hub a notification is a small POST, and httpx's per-request machinery cost several
times the CPU of the request itself, on the interpreter lock the ingest needs. With
``child`` (the default, setting ``sender_process``), those POSTs are made by a child process
of the worker's (:class:`~fhirhub.plugins.subscriptions.sendproc.ChildSender`), on another
core: the worker only hands it the serialised request and reads the status code. Everything else
(``https://``, a proxy from ``HTTP_PROXY``/``ALL_PROXY``, a URL with user info) goes through
httpx in the hub's process, as before.
"""

from __future__ import annotations

import urllib.request
from urllib.parse import urlsplit

import httpx

from fhirhub.plugins.subscriptions.sendproc import ChildSender, PlainHttp, PostFailed

__all__ = ["PostFailed", "Poster"]


class Poster:
    """POSTs of one thread (not thread-safe: each delivery worker has its own)."""

    def __init__(self, timeout: float, child: bool = False) -> None:
        self._timeout = timeout
        self._child = ChildSender() if child else None
        self._plain = PlainHttp()
        self._httpx: httpx.Client | None = None
        self._proxies = urllib.request.getproxies()

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        """POST ``body``; the answer's status code, or :class:`PostFailed`."""
        parts = urlsplit(url)
        host = parts.hostname
        if parts.scheme != "http" or not host or parts.username or self._proxied(host):
            return self._post_httpx(url, body, headers, timeout)
        if self._child is not None:
            return self._child.post(url, body, headers, timeout)
        return self._plain.post(url, body, headers, timeout)

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

    @property
    def child_pid(self) -> int | None:
        """The process id of the child making this worker's POSTs, while it runs."""
        return self._child.pid if self._child is not None else None

    def close(self) -> None:
        if self._child is not None:
            self._child.close()
        self._plain.close()
        if self._httpx is not None:
            self._httpx.close()
            self._httpx = None
