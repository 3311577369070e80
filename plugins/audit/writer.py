"""The audit writer: records queue in memory and are stored in batches by one thread.

Why a thread and batches: ``request_completed`` runs on the event loop after every request, so
it only appends the record to a deque (no lock, no allocation beyond the node). The writer
wakes every :data:`INTERVAL` seconds, or at once when :data:`BATCH` records are waiting, turns
them into AuditEvents and stores them in one unit of work as the system: one commit (one
``executemany`` per table) per batch instead of one per request.

Never silently lost: a batch whose transaction fails is logged and retried with back-off, in
the same order and with the same ids (a retry cannot duplicate). At shutdown whatever could
not be stored is written to ``<data dir>/audit-spool.ndjson`` and logged as an error; the next
start stores the spool first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from fhirhub.plugins.audit.events import audit_event
from fhirhub.sdk import SYSTEM, acting_as, transaction

if TYPE_CHECKING:
    from fhirhub.sdk import Hub

log = logging.getLogger("fhirhub.audit")

#: Seconds between batches when the queue is short.
INTERVAL = 0.2
#: Records that wake the writer at once, and the most AuditEvents in one transaction.
BATCH = 500
#: Longest back-off between retries while the store refuses writes.
MAX_BACKOFF = 30.0
SPOOL_NAME = "audit-spool.ndjson"


class AuditWriter:
    """Queue + writer thread; see the module docstring."""

    def __init__(self, hub: Hub, *, interval: float = INTERVAL, batch: int = BATCH) -> None:
        self.hub = hub
        self.interval = interval
        self.batch = batch
        self.site = hub.settings.base_url or f"{hub.settings.host}:{hub.settings.port}"
        self.spool = Path(hub.settings.data_dir) / SPOOL_NAME
        self._records: deque[dict[str, Any]] = deque()
        self._failed: list[dict[str, Any]] = []  # built events waiting for a retry, in order
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._busy = False
        self._stopping = False
        self.written = 0
        self.last_error: str | None = None
        self._spool_taken: Path | None = None
        self._load_spool()
        self._thread = threading.Thread(target=self._run, name="fhirhub-audit", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping

    @property
    def backlog(self) -> int:
        return len(self._records) + len(self._failed)

    def submit(self, record: dict[str, Any]) -> None:
        """Queue one ``request_completed`` record (called on the event loop: O(1))."""
        self._records.append(record)
        if len(self._records) >= self.batch:
            self._wake.set()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is stored; False on timeout or failure."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._idle:
            while self._busy or self._records or self._failed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wake.set()
                self._idle.wait(min(remaining, 0.05))
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Store what is queued, stop the thread; spool what could not be stored."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        leftover = self._failed + self._build(list(self._drain(len(self._records))))
        self._failed = []
        if leftover:
            self._write_spool(leftover)

    # -- the thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = self.interval
        while True:
            stopping = self._stopping
            if not stopping:
                self._wake.wait(backoff)
                self._wake.clear()
            with self._idle:
                self._busy = True
            try:
                ok = self._write_waiting()
            finally:
                with self._idle:
                    self._busy = False
                    self._idle.notify_all()
            if stopping and (not ok or not self._records):
                return
            backoff = self.interval if ok else min(max(backoff * 2, 0.5), MAX_BACKOFF)

    def _write_waiting(self) -> bool:
        """Store the failed batch (first, to keep order), then the queue, a batch at a time."""
        while self._failed or self._records:
            events = self._failed or self._build(list(self._drain(self.batch)))
            self._failed = []
            try:
                self._store(events)
            except Exception as exc:  # the store is down or busy: keep the events, retry
                self._failed = events
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error(
                    "Could not store %d AuditEvents (%s); retrying, %d waiting",
                    len(events),
                    self.last_error,
                    self.backlog,
                )
                return False
            self.written += len(events)
            self.last_error = None
            if self._spool_taken is not None:
                self._spool_taken.unlink(missing_ok=True)
                self._spool_taken = None
        return True

    def _drain(self, count: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while self._records and len(out) < count:
            out.append(self._records.popleft())
        return out

    def _build(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        events = []
        for record in records:
            try:
                events.append(audit_event(record, site=self.site))
            except Exception:  # a malformed record is a bug: say so, with what it was
                log.exception("Could not turn a request record into an AuditEvent: %r", record)
        return events

    def _store(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        # Through the normal write path (validated, hooked; references checked except the
        # record-only ones), with the event's own id: a retried batch updates to the same
        # content, which writes nothing, so a retry never duplicates an event.
        with acting_as(SYSTEM), transaction(self.hub) as tx:
            for event in events:
                tx.update(event)

    # -- the spool ----------------------------------------------------------------------------
    def _write_spool(self, events: list[dict[str, Any]]) -> None:
        try:
            self.spool.parent.mkdir(parents=True, exist_ok=True)
            with self.spool.open("ab") as handle:
                for event in events:
                    handle.write(orjson.dumps(event) + b"\n")
        except OSError:
            log.exception(
                "LOST %d AuditEvents: neither the store nor the spool took them", len(events)
            )
            return
        log.error(
            "%d AuditEvents could not be stored (%s); kept in %s and stored at the next start",
            len(events),
            self.last_error,
            self.spool,
        )

    def _load_spool(self) -> None:
        # A ``.loading`` file is a spool whose storing a crash interrupted: take it too.
        taken = self.spool.with_suffix(".loading")
        try:
            if self.spool.is_file():
                with taken.open("ab") as handle:
                    handle.write(self.spool.read_bytes())
                self.spool.unlink()
            if not taken.is_file():
                return
            lines = taken.read_bytes().splitlines()
            self._failed = [orjson.loads(line) for line in lines if line.strip()]
        except (OSError, orjson.JSONDecodeError):
            log.exception("Could not read the audit spool %s", taken)
            return
        self._spool_taken = taken  # removed once its events are stored
        log.warning("Storing %d spooled AuditEvents from %s", len(self._failed), taken)
