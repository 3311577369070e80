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


def two_patients(first_control: str, second_control: str) -> tuple[bytes, bytes]:
    first = (
        f"MSH|^~\\&|REG|GOODHOSP|HUB|HUB|20240101||ADT^A01|{first_control}|P|2.5.1\r"
        "PID|1||FRAME-1^^^GOODHOSP^MR||Alpha^Ann||19700101|F\r"
        "NK1|1|Alpha^Bob|SPO^Spouse\r"
    ).encode()
    second = (
        f"MSH|^~\\&|REG|GOODHOSP|HUB|HUB|20240101||ADT^A01|{second_control}|P|2.5.1\r"
        "PID|1||FRAME-2^^^GOODHOSP^MR||Beta^Bea||19800101|F\r"
        "NK1|1|Beta^Carl|FTH^Father\r"
    ).encode()
    return first, second


def test_several_messages_in_one_frame_are_each_processed_never_merged(
    server: MllpServer, hub: Hub
) -> None:
    from tests.adapters.hl7.stored import stored

    first, second = two_patients("FRAME-A", "FRAME-B")
    with connect(server) as sock:
        sock.sendall(frame(first + second))
        answer = read_frame(sock)
    assert answer.count(b"\x1c\r") == 1  # one response frame for one frame sent
    assert b"MSA|AA|FRAME-A" in answer and b"MSA|AA|FRAME-B" in answer
    system = "urn:fhirhub:hl7v2:GOODHOSP"
    (ann,) = stored(hub, "Patient", identifier=f"{system}|FRAME-1")
    (bea,) = stored(hub, "Patient", identifier=f"{system}|FRAME-2")
    assert ann["name"][0]["family"] == "Alpha" and bea["name"][0]["family"] == "Beta"
    (bob,) = stored(hub, "RelatedPerson", patient=f"Patient/{ann['id']}")
    (carl,) = stored(hub, "RelatedPerson", patient=f"Patient/{bea['id']}")
    assert bob["name"][0]["given"] == ["Bob"] and carl["name"][0]["given"] == ["Carl"]


def test_an_fhs_bhs_batch_is_accepted_and_answered_as_a_batch(server: MllpServer, hub: Hub) -> None:
    from tests.adapters.hl7.stored import stored

    first, second = two_patients("BATCH-A", "BATCH-B")
    batch = (
        b"FHS|^~\\&|REG|GOODHOSP|HUB|HUB|20240101||||F-77\r"
        b"BHS|^~\\&|REG|GOODHOSP|HUB|HUB|20240101||||B-77\r" + first + second + b"BTS|2\rFTS|1\r"
    )
    with connect(server) as sock:
        sock.sendall(frame(batch))
        answer = read_frame(sock)[1:-2].decode()
    lines = answer.rstrip("\r").split("\r")
    assert lines[0].startswith("FHS|^~\\&|HUB|HUB|REG|GOODHOSP|") and lines[0].endswith("|F-77")
    assert lines[1].startswith("BHS|") and lines[1].endswith("|B-77")
    assert [line[:13] for line in lines if line.startswith("MSA")] == [
        "MSA|AA|BATCH-",
        "MSA|AA|BATCH-",
    ]
    assert lines[-2:] == ["BTS|2", "FTS|1"]
    system = "urn:fhirhub:hl7v2:GOODHOSP"
    assert len(stored(hub, "Patient", identifier=f"{system}|FRAME-1")) == 1
    assert len(stored(hub, "Patient", identifier=f"{system}|FRAME-2")) == 1
