"""The audit journal: every AuditEvent is on disk before its request is answered.

Why: AuditEvents are stored in batches by a writer thread (one transaction per batch instead
of one per request), so a process killed between the answer and the batch lost the events of
requests it had acknowledged. Now the ``request_completed`` hook (called before the response
starts) appends the built event to this journal first; the batch writer removes journal
segments once everything in them is stored, and a process that starts takes over the segments
no running process holds and stores them (an event keeps its id, so storing one twice updates
it to the same content and adds nothing).

Durability: an append is one ``write`` to a file opened with ``O_APPEND``, which survives the
process being killed (the kernel holds the page); with ``fsync`` on it also survives a power
loss, at the cost of a disk flush per request. The default matches the store's own SQLite
setting (``synchronous=NORMAL``: durable across process crashes, not necessarily across power
loss).

Layout: ``<data dir>/audit-journal/<pid>-<random>-<n>.ndjson``, one JSON event per line. Each process
holds an exclusive ``flock`` on its segments while it lives, which is how a starting process
tells the segments of a dead one (taken over) from those of a running one (left alone).
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("fhirhub.audit")

#: A segment is closed (and can be deleted once stored) when it grows past this size.
SEGMENT_BYTES = 1 << 20
#: The live segment is rotated early when everything in it is stored and it is this big.
ROTATE_STORED_BYTES = 64 << 10


@dataclass
class _Segment:
    path: Path
    descriptor: int
    last: int = 0  # the number of the last event appended to it
    size: int = 0


class AuditJournal:
    """Append-only journal segments of one process; see the module docstring."""

    def __init__(self, directory: Path, *, fsync: bool = False) -> None:
        self.directory = directory
        self.fsync = fsync
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        self._number = 0
        self._generation = 0
        self._token = secrets.token_hex(4)  # several journals in one process (tests, restarts)
        self._closed: list[_Segment] = []
        self._taken: dict[Path, int] = {}  # orphan segments being stored, locked
        self._live = self._open_segment()

    # -- appending (request path) ----------------------------------------------------------------
    def append(self, event: dict[str, Any]) -> int:
        """Write one event; returns its number (increasing). Raises ``OSError`` if the disk
        refuses it, so the caller knows the event is not durable."""
        line = orjson.dumps(event) + b"\n"
        with self._lock:
            live = self._live
            os.write(live.descriptor, line)
            if self.fsync:
                os.fdatasync(live.descriptor)
            self._number += 1
            live.last = self._number
            live.size += len(line)
            if live.size >= SEGMENT_BYTES:
                self._rotate()
            return self._number

    # -- forgetting what is stored (writer thread) -----------------------------------------------
    def stored_through(self, number: int) -> None:
        """Events up to ``number`` are in the store: delete the segments that hold only those."""
        with self._lock:
            live = self._live
            if live.last and live.last <= number and live.size >= ROTATE_STORED_BYTES:
                self._rotate()
            keep = []
            for segment in self._closed:
                if segment.last <= number:
                    _remove(segment)
                else:
                    keep.append(segment)
            self._closed = keep

    def close(self, *, all_stored: bool) -> None:
        """At shutdown: delete the segments when everything was stored, else leave them for
        the next start to store."""
        with self._lock:
            for segment in [*self._closed, self._live]:
                if all_stored or segment.last == 0:
                    _remove(segment)
                else:
                    os.close(segment.descriptor)
            self._closed = []

    # -- taking over a dead process's segments ---------------------------------------------------
    def orphans(self) -> Iterator[tuple[Path, list[dict[str, Any]]]]:
        """The segments no running process holds, oldest first, with their events (locked
        while yielded; the caller deletes each once stored, see :meth:`release`)."""
        mine = {self._live.path, *(s.path for s in self._closed)}
        paths = sorted(self.directory.glob("*.ndjson"), key=lambda p: p.stat().st_mtime)
        for path in paths:
            if path in mine:
                continue
            try:
                descriptor = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a running process's segment
                os.close(descriptor)
                continue
            self._taken[path] = descriptor
            yield path, list(_events_in(path))

    def release(self, path: Path, *, stored: bool) -> None:
        """Let go of an orphan segment, deleting it when its events are stored."""
        descriptor = self._taken.pop(path, None)
        if stored:
            path.unlink(missing_ok=True)
        if descriptor is not None:
            os.close(descriptor)

    # -- internals -------------------------------------------------------------------------------
    def _open_segment(self) -> _Segment:
        self._generation += 1
        path = self.directory / f"{os.getpid()}-{self._token}-{self._generation}.ndjson"
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        return _Segment(path, descriptor)

    def _rotate(self) -> None:
        self._closed.append(self._live)
        self._live = self._open_segment()


def _remove(segment: _Segment) -> None:
    segment.path.unlink(missing_ok=True)
    os.close(segment.descriptor)


def _events_in(path: Path) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield orjson.loads(line)
        except orjson.JSONDecodeError:  # a line torn by a crash mid-write: never acknowledged
            log.warning("Skipping a torn line %d of the audit journal %s", number, path)
