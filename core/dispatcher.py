"""The dispatcher: delivers ``resource_committed`` to every plugin, in log order, at least once.

Each plugin implementing ``resource_committed`` is a *consumer* with its own cursor in the
``dispatch_cursor`` table (the last ``seq`` it handled). The writer only wakes the dispatcher
(a commit listener sets an event); delivery runs on the dispatcher's thread, so a slow or
failing plugin never blocks or breaks a write.

* Order: versions are read from the log by ``seq``; the store makes ``seq`` order commit order
  (one writer on SQLite, an advisory lock around log appends on PostgreSQL).
* At least once: a cursor advances only after the hook returned. A crash between the hook and
  the cursor update re-delivers that version after restart, so handlers must be idempotent.
* Failures: a raising hook is logged and retried from the same version with exponential
  back-off (up to :data:`MAX_BACKOFF_S`); other consumers go on.
* New consumers start at the head of the log when first seen (a plugin installed today is not
  flooded with years of history; ``fhirhub replay``-style backfills are the plugin's choice).
* Several processes (PostgreSQL, several API workers): each consumer is served by whichever
  process holds its session advisory lock, so deliveries are not duplicated across processes.
* With ``FHIRHUB_BROKER`` set, each delivery runs as a Celery task on a worker (see
  :mod:`fhirhub.core.celery_app`); the dispatcher waits for it, which keeps per-plugin order.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, func, insert, select, update

from fhirhub.fhir_store.encryption import opened
from fhirhub.fhir_store.schema import dispatch_cursor, outbox, resource_version
from fhirhub.fhir_store.versions import StoredVersion

if TYPE_CHECKING:
    from fhirhub.core.hub import Hub

log = logging.getLogger("fhirhub.dispatcher")

BATCH = 500
POLL_S = 1.0  # also picks up versions committed by other processes
MAX_BACKOFF_S = 60.0


@dataclass
class Consumer:
    name: str
    deliver: Callable[[StoredVersion], None]
    cursor: int = 0
    failures: int = 0
    retry_at: float = 0.0
    last_error: str | None = None
    delivered: int = 0


def read_versions(conn: Connection, after: int, limit: int = BATCH) -> list[StoredVersion]:
    rows = conn.execute(
        select(
            resource_version.c.resource_type,
            resource_version.c.resource_id,
            resource_version.c.version_id,
            resource_version.c.last_updated,
            resource_version.c.deleted,
            resource_version.c.content,
            resource_version.c.seq,
            resource_version.c.method,
        )
        .where(resource_version.c.seq > after)
        .order_by(resource_version.c.seq)
        .limit(limit)
    ).all()
    return [
        StoredVersion(r[0], r[1], r[2], r[3], bool(r[4]), opened(conn, r[5]), r[6], r[7])
        for r in rows
    ]


@dataclass
class Dispatcher:
    hub: Hub
    consumers: dict[str, Consumer] = field(default_factory=dict)
    _wake: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _idle: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock_conn: Any = None
    _owned: set[str] = field(default_factory=set)

    def start(self) -> None:
        self._load_consumers()
        if not self.consumers:
            return
        self.hub.store.add_commit_listener(lambda _versions: self.wake())
        self._thread = threading.Thread(target=self._run, name="fhirhub-dispatcher", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._idle.clear()
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._lock_conn is not None:
            self._lock_conn.close()
            self._lock_conn = None

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every consumer has caught up with the log (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.wake()
            if self._idle.wait(timeout=0.05) and self._caught_up():
                return True
        return False

    # -- internals -----------------------------------------------------------------------------

    def _load_consumers(self) -> None:
        from fhirhub.core.celery_app import broker_delivery

        remote = broker_delivery(self.hub)
        for impl in self.hub.plugins.hook.resource_committed.get_hookimpls():
            self.consumers[impl.plugin_name] = Consumer(
                impl.plugin_name, self._delivery(impl.plugin_name, impl.function, remote)
            )
        with self.hub.store.unit_of_work() as uow:
            head = uow.conn.execute(
                select(func.coalesce(func.max(resource_version.c.seq), 0))
            ).scalar_one()
            known = dict(
                uow.conn.execute(
                    select(dispatch_cursor.c.consumer, dispatch_cursor.c.last_seq)
                ).all()
            )
            for consumer in self.consumers.values():
                if consumer.name in known:
                    consumer.cursor = int(known[consumer.name])
                else:
                    consumer.cursor = int(head)
                    uow.conn.execute(
                        insert(dispatch_cursor).values(consumer=consumer.name, last_seq=int(head))
                    )

    def _delivery(
        self,
        name: str,
        function: Callable[..., Any],
        remote: Callable[[str, int], None] | None,
    ) -> Callable[[StoredVersion], None]:
        """In-process call of the plugin's hook, or a Celery round trip when a broker is set."""

        def deliver(version: StoredVersion) -> None:
            if remote is not None:
                remote(name, version.seq)
            else:
                function(event=version, hub=self.hub)

        return deliver

    def _caught_up(self) -> bool:
        with self.hub.store.read() as conn:
            head = conn.execute(
                select(func.coalesce(func.max(resource_version.c.seq), 0))
            ).scalar_one()
        return all(c.cursor >= head for c in self.consumers.values())

    def _owns(self, consumer: Consumer) -> bool:
        """Whether this process serves ``consumer`` (a session advisory lock, kept once won)."""
        if self.hub.store.is_sqlite or consumer.name in self._owned:
            return True
        if self._lock_conn is None:
            self._lock_conn = self.hub.store.engine.connect()
        key = int.from_bytes(
            hashlib.sha256(consumer.name.encode()).digest()[:8], "big", signed=True
        )
        owned = self._lock_conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({key})").scalar()
        self._lock_conn.commit()
        if owned:
            self._owned.add(consumer.name)
        return bool(owned)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=POLL_S)
            self._wake.clear()
            try:
                busy = self._round()
            except Exception:  # the dispatcher must survive anything (e.g. a DB restart)
                log.exception("Dispatcher round failed; retrying")
                busy = False
                time.sleep(POLL_S)
            if busy:
                self._wake.set()
            else:
                self._idle.set()

    def _round(self) -> bool:
        """Deliver one batch to each consumer that is due; True if more work may be waiting."""
        busy = False
        advanced: dict[str, int] = {}
        now = time.monotonic()
        due = [c for c in self.consumers.values() if c.retry_at <= now and self._owns(c)]
        if not due:
            return False
        # One read of the log per round, shared by every consumer that is due.
        with self.hub.store.read() as conn:
            batch = read_versions(conn, min(c.cursor for c in due))
        for consumer in due:
            versions = [v for v in batch if v.seq > consumer.cursor]
            if not versions:
                continue
            delivered_to = consumer.cursor
            for version in versions:
                try:
                    consumer.deliver(version)
                except Exception as exc:
                    consumer.failures += 1
                    delay = min(MAX_BACKOFF_S, 0.1 * 2 ** min(consumer.failures, 10))
                    consumer.retry_at = time.monotonic() + delay
                    consumer.last_error = f"{type(exc).__name__}: {exc}"
                    log.error(
                        "Plugin %s failed on %s/%s (seq %s); retrying in %.1f s: %s",
                        consumer.name,
                        version.resource_type,
                        version.resource_id,
                        version.seq,
                        delay,
                        consumer.last_error,
                    )
                    busy = True
                    break
                delivered_to = version.seq
                consumer.delivered += 1
                consumer.failures = 0
                consumer.last_error = None
            if delivered_to != consumer.cursor:
                advanced[consumer.name] = delivered_to
                busy = busy or len(batch) == BATCH
        if advanced:
            self._save_cursors(advanced)
            # Only once persisted: a failed save re-delivers (at least once), and a cursor seen
            # in memory (wait_idle) is always the one in the table.
            for name, position in advanced.items():
                self.consumers[name].cursor = position
        return busy

    def _save_cursors(self, advanced: dict[str, int]) -> None:
        """Persist cursors and drop outbox rows every consumer has passed, in one transaction."""
        low = min(advanced.get(c.name, c.cursor) for c in self.consumers.values())
        with self.hub.store.unit_of_work() as uow:
            for name, position in advanced.items():
                uow.conn.execute(
                    update(dispatch_cursor)
                    .where(dispatch_cursor.c.consumer == name)
                    .values(last_seq=position)
                )
            uow.conn.execute(delete(outbox).where(outbox.c.seq <= low))
