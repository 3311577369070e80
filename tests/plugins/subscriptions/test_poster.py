"""The rest-hook POSTs of a delivery worker: kept-alive connections to plain-http endpoints,
a connection the receiver closed is replaced, no answer is a failure, proxies go to httpx."""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from fhirhub.plugins.subscriptions.poster import Poster, PostFailed


class Endpoint:
    """An HTTP/1.1 receiver that records the client port of each request; with
    ``close_after_each`` it drops the connection after answering without saying so."""

    def __init__(self, close_after_each: bool = False) -> None:
        self.ports: list[int] = []
        self.bodies: list[bytes] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                endpoint.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.ports.append(self.client_address[1])
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.close_connection = close_after_each

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?x=1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(params=["in-process", "child"])
def poster(request: pytest.FixtureRequest) -> Iterator[Poster]:
    """The worker's POSTs made in the hub's process, or by its child process."""
    p = Poster(timeout=5.0, child=request.param == "child")
    yield p
    p.close()


def test_plain_http_goes_through_a_child_process_that_ends_when_closed() -> None:
    endpoint = Endpoint()
    poster = Poster(timeout=5.0, child=True)
    try:
        assert poster.child_pid is None  # started on first use
        assert poster.post(endpoint.url, b"{}", {}, 5.0) == 202
        pid = poster.child_pid
        assert pid is not None and pid != os.getpid()
        assert poster.post(endpoint.url, b"{}", {}, 5.0) == 202
        assert poster.child_pid == pid  # kept
        poster.close()
        assert poster.child_pid is None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # ended and reaped
    finally:
        poster.close()
        endpoint.close()


def test_a_killed_child_is_a_failed_post_and_a_fresh_one_sends_the_next() -> None:
    endpoint = Endpoint()
    poster = Poster(timeout=5.0, child=True)
    try:
        assert poster.post(endpoint.url, b"{}", {}, 5.0) == 202
        pid = poster.child_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(PostFailed):
            poster.post(endpoint.url, b"{}", {}, 5.0)
        assert poster.post(endpoint.url, b'{"n": 2}', {}, 5.0) == 202
        assert poster.child_pid not in (None, pid)
        assert endpoint.bodies == [b"{}", b'{"n": 2}']
    finally:
        poster.close()
        endpoint.close()


def test_posts_to_one_endpoint_share_a_kept_alive_connection(poster: Poster) -> None:
    endpoint = Endpoint()
    try:
        for n in range(5):
            assert poster.post(endpoint.url, b'{"n": %d}' % n, {"X-A": "1"}, 5.0) == 202
        assert endpoint.bodies == [b'{"n": %d}' % n for n in range(5)]
        assert len(set(endpoint.ports)) == 1
    finally:
        endpoint.close()


def test_a_connection_the_receiver_closed_is_replaced(poster: Poster) -> None:
    endpoint = Endpoint(close_after_each=True)
    try:
        for _ in range(3):
            assert poster.post(endpoint.url, b"{}", {}, 5.0) == 202
        assert len(endpoint.bodies) == 3
        assert len(set(endpoint.ports)) == 3
    finally:
        endpoint.close()


def test_no_answer_is_a_failure(poster: Poster) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nobody listens once closed
    with pytest.raises(PostFailed):
        poster.post(f"http://127.0.0.1:{port}/hook", b"{}", {}, 2.0)


def test_a_proxied_host_goes_through_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    proxied = Poster(timeout=1.0)
    assert proxied._proxied("alerts.example.org")
    assert not proxied._proxied("internal.example")
    monkeypatch.delenv("HTTP_PROXY")
    monkeypatch.delenv("NO_PROXY")
    for name in ("http_proxy", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert not Poster(timeout=1.0)._proxied("alerts.example.org")
