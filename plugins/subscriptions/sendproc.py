"""Plain ``http://`` rest-hook POSTs, and the child process that sends them off the hub's
interpreter lock.

This module uses the standard library only: the hub imports it as
``fhirhub.plugins.subscriptions.sendproc``, and :class:`SenderProcess` runs the same file as a
script (``python -I -S sendproc.py WORKERS``), a process that imports nothing of the hub.

Protocol over the child's stdin/stdout, one frame per request and per answer (network byte
order): a request is ``id, head length, body length`` (``!III``), then the head (JSON:
``[url, headers, timeout]``) and the body; an answer is ``id, status, message length``
(``!IiI``) and the message (UTF-8), the status being the HTTP status code, or -1 when no
answer came (the message says why). The child answers in any order (a pool of threads, each
with kept-alive connections of its own); the hub matches answers to requests by id.
"""

from __future__ import annotations

import http.client
import json
import os
import struct
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any
from urllib.parse import urlsplit

REQUEST = struct.Struct("!III")
ANSWER = struct.Struct("!IiI")
#: Seconds, beyond a request's own timeout, that the hub waits for the child's answer.
ANSWER_GRACE_S = 5.0


class PostFailed(Exception):
    """No answer: the connection failed, timed out, or the request could not be made."""


class PlainHttp:
    """Kept-alive HTTP/1.1 connections of one thread, one per host and port (not
    thread-safe)."""

    def __init__(self) -> None:
        self._connections: dict[tuple[str, int], http.client.HTTPConnection] = {}

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        """POST ``body`` to a plain ``http://`` URL; the status code, or :class:`PostFailed`."""
        parts = urlsplit(url)
        host = parts.hostname
        if not host:
            raise PostFailed(f"no host in {url!r}")
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

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    """``size`` bytes, or None at the end of the stream."""
    data = stream.read(size)
    if data is None or len(data) < size:
        return None
    return data


class _Pending:
    __slots__ = ("done", "status", "message")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.status = -1
        self.message = "the sender process exited"


class SenderProcess:
    """The hub's side: starts the child on first use, and again after it exited (a POST in
    flight when it exits fails, as a POST without an answer does); thread-safe."""

    def __init__(self, workers: int) -> None:
        self._workers = max(1, workers)
        self._lock = threading.Lock()  # guards the process, its stdin and the pending map
        self._process: subprocess.Popen[bytes] | None = None
        #: Requests not yet answered: id -> (the process sent to, the waiter).
        self._pending: dict[int, tuple[subprocess.Popen[bytes], _Pending]] = {}
        self._next_id = 0
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (tests kill it)."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def _start(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.abspath(__file__), str(self._workers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        threading.Thread(
            target=self._read_answers,
            args=(process,),
            name="fhirhub-subscriptions-sender-answers",
            daemon=True,
        ).start()
        return process

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        """POST through the child; the status code, or :class:`PostFailed`."""
        head = json.dumps([url, headers, timeout]).encode()
        pending = _Pending()
        with self._lock:
            if self._closed:
                raise PostFailed("the sender process is shut down")
            process = self._process
            if process is None or process.poll() is not None:
                process = self._process = self._start()
            self._next_id = request_id = (self._next_id + 1) & 0xFFFFFFFF
            self._pending[request_id] = (process, pending)
            try:
                assert process.stdin is not None
                process.stdin.write(REQUEST.pack(request_id, len(head), len(body)) + head + body)
                process.stdin.flush()
            except (OSError, ValueError) as exc:  # the child exited: started again next time
                self._pending.pop(request_id, None)
                raise PostFailed(f"the sender process is gone: {exc}") from exc
        if not pending.done.wait(timeout + ANSWER_GRACE_S):
            with self._lock:
                self._pending.pop(request_id, None)
            raise PostFailed(f"no answer from the sender process within {timeout:.1f} s")
        if pending.status < 0:
            raise PostFailed(pending.message)
        return pending.status

    def _read_answers(self, process: subprocess.Popen[bytes]) -> None:
        stdout = process.stdout
        assert stdout is not None
        try:
            while (frame := _read_exactly(stdout, ANSWER.size)) is not None:
                request_id, status, size = ANSWER.unpack(frame)
                message = _read_exactly(stdout, size) if size else b""
                if message is None:
                    break
                with self._lock:
                    entry = self._pending.pop(request_id, None)
                if entry is not None:
                    entry[1].status, entry[1].message = status, message.decode()
                    entry[1].done.set()
        except (OSError, ValueError):
            pass
        # The child exited (killed, crashed, or shut down): what it had not answered failed.
        process.wait()
        with self._lock:
            if self._process is process:
                self._process = None
            lost = [rid for rid, (sent_to, _) in self._pending.items() if sent_to is process]
            waiters = [self._pending.pop(rid)[1] for rid in lost]
        for pending in waiters:
            pending.done.set()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the child once it answered what it was sent (killed after ``timeout``)."""
        with self._lock:
            self._closed = True
            process = self._process
        if process is None:
            return
        try:
            assert process.stdin is not None
            process.stdin.close()  # the child ends at the end of its input
        except OSError:
            pass
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- the child ---------------------------------------------------------------------------------
def _child(workers: int) -> None:
    stdin = sys.stdin.buffer
    stdout = sys.stdout.buffer
    write_lock = threading.Lock()
    local = threading.local()

    def send(request_id: int, url: str, headers: dict[str, str], timeout: float, body: bytes) -> None:
        client: PlainHttp | None = getattr(local, "client", None)
        if client is None:
            client = local.client = PlainHttp()
        try:
            status, message = client.post(url, body, headers, timeout), b""
        except PostFailed as exc:
            status, message = -1, str(exc).encode()
        except Exception as exc:  # anything else is a failed attempt too, never a hang
            status, message = -1, f"{type(exc).__name__}: {exc}".encode()
        with write_lock:
            try:
                stdout.write(ANSWER.pack(request_id, status, len(message)) + message)
                stdout.flush()
            except (OSError, ValueError):
                pass  # the hub is gone

    with ThreadPoolExecutor(max_workers=workers) as pool:
        while (frame := _read_exactly(stdin, REQUEST.size)) is not None:
            request_id, head_size, body_size = REQUEST.unpack(frame)
            head = _read_exactly(stdin, head_size)
            body = _read_exactly(stdin, body_size) if body_size else b""
            if head is None or body is None:
                break
            url, headers, timeout = json.loads(head)
            pool.submit(send, request_id, url, headers, timeout, body)
    # The end of the input: the hub closed it (shutdown) or exited; the pool finishes what
    # it was given.


if __name__ == "__main__":
    _child(int(sys.argv[1]) if len(sys.argv) > 1 else 8)
