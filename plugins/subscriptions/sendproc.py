"""Plain ``http://`` rest-hook POSTs, and the child process that sends them off the hub's
interpreter lock.

This module uses the standard library only: the hub imports it as
``fhirhub.plugins.subscriptions.sendproc``, and :class:`ChildSender` runs the same file as a
script (``python -I -S sendproc.py``), a process that imports nothing of the hub. Each
delivery worker has a child of its own, which sends one POST at a time over kept-alive
connections: the worker writes the request and reads the answer itself, so a notification
costs the hub's interpreter lock the serialisation and two system calls, and wakes no other
thread of the hub.

Protocol over the child's stdin/stdout, one frame per request and per answer (network byte
order): a request is ``id, head length, body length`` (``!III``), then the head (JSON:
``[url, headers, timeout]``) and the body; an answer is ``id, status, message length``
(``!IiI``) and the message (UTF-8), the status being the HTTP status code, or -1 when no
answer came (the message says why).
"""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import struct
import subprocess
import sys
from typing import IO
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
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class ChildSender:
    """One child process that makes the POSTs of one delivery worker, one at a time (not
    thread-safe: each worker has its own). The worker writes the request to the child's
    input and reads the answer from its output itself: no thread of the hub's is woken in
    between. Started on first use, and again after it exited; a POST in flight when it exits
    (killed, crashed) fails, as a POST without an answer does."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._next_id = 0

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        """POST through the child; the status code, or :class:`PostFailed`."""
        self._next_id = request_id = (self._next_id + 1) & 0xFFFFFFFF
        head = json.dumps([url, headers, timeout]).encode()
        try:
            process = self._process
            if process is None:
                process = self._process = subprocess.Popen(
                    [sys.executable, "-I", "-S", os.path.abspath(__file__)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    bufsize=0,
                    close_fds=True,
                )
            assert process.stdin is not None and process.stdout is not None
            frame = b"".join((REQUEST.pack(request_id, len(head), len(body)), head, body))
            view = memoryview(frame)
            while view:
                view = view[os.write(process.stdin.fileno(), view) :]
            poll = select.poll()
            poll.register(process.stdout, select.POLLIN)
            if not poll.poll((timeout + ANSWER_GRACE_S) * 1000):
                raise PostFailed(f"no answer from the sender process within {timeout:.1f} s")
            answer = _read_exactly(process.stdout, ANSWER.size)
            if answer is None:
                raise PostFailed("the sender process exited")
            answered, status, size = ANSWER.unpack(answer)
            message = _read_exactly(process.stdout, size) if size else b""
            if message is None or answered != request_id:
                raise PostFailed("the sender process answered out of turn")
        except PostFailed:
            self._discard()  # its state is unknown: a fresh one next time
            raise
        except (OSError, ValueError) as exc:
            self._discard()
            raise PostFailed(f"the sender process is gone: {type(exc).__name__}: {exc}") from exc
        if status < 0:
            raise PostFailed(message.decode())
        return int(status)

    def _discard(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the child (it ends at the end of its input; killed after ``timeout``)."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


# -- the child ---------------------------------------------------------------------------------
def _child() -> None:
    # A Ctrl-C at the hub's terminal reaches this process too: the hub decides when it ends
    # (it closes the input).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin = sys.stdin.buffer
    stdout = sys.stdout.buffer
    client = PlainHttp()
    while (frame := _read_exactly(stdin, REQUEST.size)) is not None:
        request_id, head_size, body_size = REQUEST.unpack(frame)
        head = _read_exactly(stdin, head_size)
        body = _read_exactly(stdin, body_size) if body_size else b""
        if head is None or body is None:
            break
        try:
            url, headers, timeout = json.loads(head)
            status, message = client.post(url, body, headers, timeout), b""
        except PostFailed as exc:
            status, message = -1, str(exc).encode()
        except Exception as exc:  # anything else is a failed attempt too, never a hang
            status, message = -1, f"{type(exc).__name__}: {exc}".encode()
        stdout.write(ANSWER.pack(request_id, status, len(message)) + message)
        stdout.flush()
    # The end of the input: the hub closed it (shutdown) or exited.
    client.close()


if __name__ == "__main__":
    _child()
