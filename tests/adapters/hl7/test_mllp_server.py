"""The MLLP listener over real sockets: framing, ordering, bad input, TCP_NODELAY."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from fhirhub.adapters.hl7.mllp_server import MllpServer, frame
from fhirhub.core.hub import Hub
from tests.adapters.hl7.conftest import fixture


@pytest.fixture
def server(hub: Hub) -> Iterator[MllpServer]:
    mllp = MllpServer(hub, "127.0.0.1", 0, frame_timeout=1.0).start()
    yield mllp
    mllp.stop()


def read_frame(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\x1c\r"):
        chunk = sock.recv(65536)
        assert chunk, "connection closed before an ACK arrived"
        data += chunk
    return data


def connect(server: MllpServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def test_messages_on_one_connection_are_acknowledged_in_order(server: MllpServer) -> None:
    with connect(server) as sock:
        sock.sendall(frame(fixture("adt_a01.hl7")) + frame(fixture("siu_s12.hl7")))
        first = read_frame(sock)
        second = first if first.count(b"\x1c\r") > 1 else read_frame(sock)
    assert b"MSA|AA|CTRL-A01-1" in first
    assert b"MSA|AA|CTRL-SIU-1" in second


def test_bad_input_does_not_stop_the_listener(server: MllpServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"garbage before any frame" + frame(b"no MSH here"))
        assert b"MSA|AR" in read_frame(sock)
        sock.sendall(frame(b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|V-1|P|9.9\r"))
        answer = read_frame(sock)
        assert b"MSA|AR|V-1" in answer and b"203" in answer
    with connect(server) as sock:  # dropped mid-frame
        sock.sendall(b"\x0bMSH|^~\\&|A|B")
    with connect(server) as sock:  # a frame with no end block times out with AR
        sock.sendall(b"\x0bMSH|^~\\&|A|B|C|D|20240101||ADT^A01|T-1|P|2.5\r")
        assert b"MSA|AR|T-1" in read_frame(sock)
    time.sleep(0.2)
    with connect(server) as sock:
        sock.sendall(frame(fixture("adt_a01.hl7")))
        assert b"MSA|AA" in read_frame(sock)
