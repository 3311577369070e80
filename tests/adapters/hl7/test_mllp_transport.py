"""MLLP framing over real sockets with a recording handler (no store): ordering, concurrency,
garbage, missing end block, oversized frames, drops mid-frame, TCP_NODELAY."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from fhirhub.adapters.hl7.ack import Header, acknowledgments
from fhirhub.adapters.hl7.mllp_server import MllpServer, frame
from fhirhub.adapters.hl7.parsing import Hl7ParseError, parse


class Recorder:
    def __init__(self) -> None:
        self.processed: list[bytes] = []
        self.dead: list[tuple[bytes, str]] = []
        self.lock = threading.Lock()

    def handle(self, raw: bytes) -> list[bytes]:
        try:
            header = Header.of(parse(raw))
        except Hl7ParseError as error:
            return acknowledgments(Header.salvage(raw), "AR", str(error))
        if b"SLOW" in raw:
            time.sleep(0.3)
        if b"CRASH" in raw:
            raise RuntimeError("boom")
        with self.lock:
            self.processed.append(raw)
        return acknowledgments(header, "AA")

    def dead_letter(self, raw: bytes, reason: str) -> None:
        with self.lock:
            self.dead.append((raw, reason))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def server(recorder: Recorder) -> Iterator[MllpServer]:
    mllp = MllpServer(
        None,
        "127.0.0.1",
        0,
        handler=recorder.handle,
        dead_letter=recorder.dead_letter,
        frame_timeout=0.5,
        max_frame_bytes=1024 * 1024,
    ).start()
    yield mllp
    mllp.stop()


def message(control: str, extra: str = "") -> bytes:
    return (
        f"MSH|^~\\&|APP|FAC|HUB|HUB|20240101||ADT^A01|{control}|P|2.5.1\rPID|1||{extra}\r"
    ).encode()


def connect(server: MllpServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_frames(sock: socket.socket, count: int) -> list[bytes]:
    data = b""
    while data.count(b"\x1c\r") < count:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the ACKs arrived"
        data += chunk
    return [f[1:] for f in data.split(b"\x1c\r") if f]


def test_in_order_per_connection(server: MllpServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"".join(frame(message(f"C{i}", "SLOW" if i == 0 else "")) for i in range(5)))
        acks = read_frames(sock, 5)
    assert [a.split(b"\r")[1].split(b"|")[2] for a in acks] == [b"C0", b"C1", b"C2", b"C3", b"C4"]


def test_slow_connection_does_not_block_others(server: MllpServer) -> None:
    with connect(server) as slow, connect(server) as fast:
        slow.sendall(frame(message("S1", "SLOW")))
        time.sleep(0.05)
        started = time.perf_counter()
        fast.sendall(frame(message("F1")))
        read_frames(fast, 1)
        assert time.perf_counter() - started < 0.25
        read_frames(slow, 1)


def test_many_concurrent_connections(server: MllpServer, recorder: Recorder) -> None:
    def client(n: int) -> None:
        with connect(server) as sock:
            for i in range(10):
                sock.sendall(frame(message(f"K{n}-{i}")))
                assert b"MSA|AA" in read_frames(sock, 1)[0]

    threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(recorder.processed) == 200


def test_garbage_between_frames_is_skipped(server: MllpServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"\x00\xffnot a frame\r\n" + frame(message("G1")))
        assert b"MSA|AA|G1" in read_frames(sock, 1)[0]


def test_frame_without_end_block_is_answered_ar_and_kept(
    server: MllpServer, recorder: Recorder
) -> None:
    with connect(server) as sock:
        sock.sendall(b"\x0b" + message("T1"))
        assert b"MSA|AR|T1" in read_frames(sock, 1)[0]
    assert recorder.dead[0][0] == message("T1")
    assert "no end block" in recorder.dead[0][1]


def test_oversized_frame_is_rejected(server: MllpServer, recorder: Recorder) -> None:
    big = message("BIG", "X" * (2 * 1024 * 1024))
    with connect(server) as sock:
        sock.sendall(frame(big))
        answer = read_frames(sock, 1)[0]
        assert b"MSA|AR|BIG" in answer and b"ERR|" in answer
        sock.sendall(frame(message("AFTER")))
        assert b"MSA|AA|AFTER" in read_frames(sock, 1)[0]
    assert recorder.dead and "over" in recorder.dead[0][1]


def test_dropped_mid_frame_is_kept(server: MllpServer, recorder: Recorder) -> None:
    with connect(server) as sock:
        sock.sendall(b"\x0b" + message("D1")[:30])
    deadline = time.monotonic() + 5
    while not recorder.dead and time.monotonic() < deadline:
        time.sleep(0.02)
    assert recorder.dead[0] == (message("D1")[:30], "Connection dropped mid-frame")


def test_handler_crash_is_answered_ae_and_kept(server: MllpServer, recorder: Recorder) -> None:
    with connect(server) as sock:
        sock.sendall(frame(message("X1", "CRASH")))
        assert b"MSA|AE|X1" in read_frames(sock, 1)[0]
        sock.sendall(frame(message("X2")))
        assert b"MSA|AA|X2" in read_frames(sock, 1)[0]
    assert recorder.dead[0][0] == message("X1", "CRASH")


def test_unparseable_frame_gets_ar(server: MllpServer) -> None:
    with connect(server) as sock:
        sock.sendall(frame(b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|W1|P|9.9\r"))
        answer = read_frames(sock, 1)[0]
    assert b"MSA|AR|W1" in answer
