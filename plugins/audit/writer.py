"""The audit writer: events are journaled, queued in memory and stored in batches.

Why a thread and batches: ``request_completed`` runs on the event loop before every response
starts, so it only builds the AuditEvent, appends it to the journal (one ``write``, see
:mod:`.journal`) and to a deque. The writer wakes every :data:`INTERVAL` seconds, or at once
when :data:`BATCH` events are waiting, and stores them in one unit of work as the system: one
commit (one ``executemany`` per table) per batch instead of one per request.

Never lost: an event is in the journal before its request is answered, so a killed process's
events are stored by the next process that starts. A batch whose transaction fails is logged
and retried with back-off, in the same order and with the same ids (a retry cannot
duplicate). At shutdown whatever could not be stored stays in the journal for the next start.
A spool file of an earlier version (``<data dir>/audit-spool.ndjson``) is stored at start.
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
from fhirhub.plugins.audit.journal import AuditJournal
from fhirhub.sdk import SYSTEM, PluginSettings, acting_as, plugin_settings, transaction

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
JOURNAL_NAME = "audit-journal"

#: An event waiting to be stored, with its journal number (0: not in this process's journal).
Pending = tuple[int, dict[str, Any]]


class AuditSettings(PluginSettings):
    """``[plugin.audit]`` / ``FHIRHUB_AUDIT_*``."""

    #: Flush each journaled event to the disk (``fdatasync``) before answering: survives a
    #: power loss too, at the cost of a disk flush per audited request.
    journal_fsync: bool = False


class AuditWriter:
    """Queue + writer thread; see the module docstring."""

    def __init__(self, hub: Hub, *, interval: float = INTERVAL, batch: int = BATCH) -> None:
        self.hub = hub
        self.interval = interval
        self.batch = batch
        self.site = hub.settings.base_url or f"{hub.settings.host}:{hub.settings.port}"
        self.spool = Path(hub.settings.data_dir) / SPOOL_NAME
        settings = plugin_settings(hub, "audit", AuditSettings)
        self.journal = AuditJournal(
            Path(hub.settings.data_dir) / JOURNAL_NAME, fsync=settings.journal_fsync
        )
        self._submitting = threading.Lock()  # journal order == queue order
        self._records: deque[Pending] = deque()
        self._failed: list[Pending] = []  # events waiting for a retry, in order
        #: Segments of processes that died, taken over: stored before anything else.
        self._recovered: list[tuple[Path, list[dict[str, Any]]]] = list(self.journal.orphans())
        if self._recovered:
            count = sum(len(events) for _, events in self._recovered)
            log.warning("Storing %d journaled AuditEvents of a stopped process", count)
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
        recovered = sum(len(events) for _, events in self._recovered)
        return len(self._records) + len(self._failed) + recovered

    def submit(self, record: dict[str, Any]) -> None:
        """Build the AuditEvent of one ``request_completed`` record, journal it and queue it
        (called on the event loop before the response starts: tens of microseconds)."""
        try:
            event = audit_event(record, site=self.site)
        except Exception:  # a malformed record is a bug: say so, with what it was
            log.exception("Could not turn a request record into an AuditEvent: %r", record)
            return
        with self._submitting:
            try:
                number = self.journal.append(event)
            except OSError as exc:  # not durable: still stored by the batch, and reported
                number = 0
                self.last_error = f"journal: {type(exc).__name__}: {exc}"
                log.error("Could not journal an AuditEvent (%s)", self.last_error)
            self._records.append((number, event))
        if len(self._records) >= self.batch:
            self._wake.set()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is stored; False on timeout or failure."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._idle:
            while self._busy or self._records or self._failed or self._recovered:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wake.set()
                self._idle.wait(min(remaining, 0.05))
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Store what is queued and stop the thread; what could not be stored stays in the
        journal, for the next start."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        leftover = len(self._failed) + len(self._records)
        for path, _ in self._recovered:
            self.journal.release(path, stored=False)
        self.journal.close(all_stored=leftover == 0 and not self._recovered)
        if leftover:
            log.error(
                "%d AuditEvents could not be stored (%s); kept in %s and stored at the next start",
                leftover,
                self.last_error,
                self.journal.directory,
            )

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
        """Store a dead process's journal first, then the failed batch (to keep order), then
        the queue, a batch at a time; forget journal segments once stored."""
        while self._recovered:
            path, events = self._recovered[0]
            for start in range(0, len(events), self.batch):
                if not self._try_store(events[start : start + self.batch]):
                    self._recovered[0] = (path, events[start:])
                    return False
            self.journal.release(path, stored=True)
            self._recovered.pop(0)
        while self._failed or self._records:
            pending = self._failed or self._drain(self.batch)
            self._failed = []
            if not self._try_store([event for _, event in pending]):
                self._failed = pending
                return False
            last = max(number for number, _ in pending)
            if last:
                self.journal.stored_through(last)
            if self._spool_taken is not None:
                self._spool_taken.unlink(missing_ok=True)
                self._spool_taken = None
        return True

    def _try_store(self, events: list[dict[str, Any]]) -> bool:
        try:
            self._store(events)
        except Exception as exc:  # the store is down or busy: keep the events, retry
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
        return True

    def _drain(self, count: int) -> list[Pending]:
        out: list[Pending] = []
        while self._records and len(out) < count:
            out.append(self._records.popleft())
        return out

    def _store(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        # Through the normal write path (validated, hooked; references checked except the
        # record-only ones), with the event's own id: a retried batch updates to the same
        # content, which writes nothing, so a retry never duplicates an event.
        with acting_as(SYSTEM), transaction(self.hub) as tx:
            for event in events:
                tx.update(event)

    # -- the spool of earlier versions -------------------------------------------------------
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
            self._failed = [(0, orjson.loads(line)) for line in lines if line.strip()]
        except (OSError, orjson.JSONDecodeError):
            log.exception("Could not read the audit spool %s", taken)
            return
        self._spool_taken = taken  # removed once its events are stored
        log.warning("Storing %d spooled AuditEvents from %s", len(self._failed), taken)
