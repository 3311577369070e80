"""The dispatcher: delivers committed versions to every consumer, in log order, at least once,
each consumer on its own worker thread.

Consumers are the plugins' ``resource_committed`` hooks (one consumer per plugin, named after
it) and the :class:`~fhirhub.core.consumers.Consumer` objects of ``register_consumers``. Each
has a cursor in the ``dispatch_cursor`` table (the last ``seq`` it handled) and a thread that
reads the version log from there. The writer only wakes the threads (the core's
``after_commit`` hook sets an event), so delivery never slows or breaks a write.

* Source: the version log itself, in ``seq`` order. The store makes ``seq`` order commit
  order (one writer on SQLite, an advisory lock around log appends on PostgreSQL). An earlier
  design also wrote an ``outbox`` row per version; the log already is an ordered, durable,
  immutable outbox, so the copy was dropped (one insert less per version written; see
  docs/architecture.md for the measurement).
* At least once: a cursor advances only after the consumer returned. A crash between the two
  re-delivers that batch after restart, so consumers must be idempotent.
* Cursors are saved by one writer thread (:class:`_CursorWriter`), several at once, while the
  workers go on reading from where they are: on SQLite the save waits for the only write lock,
  which a loading client's transaction Bundles hold most of the time, and a worker that waited
  for it after each batch fell seconds behind the log. A consumer whose work becomes durable
  after ``handle`` returns (``Consumer.durable``) has its cursor saved only up to that point.
  Saves are at least :data:`CURSOR_SAVE_EVERY_S` apart: each is a write transaction, and every
  consumer's batch asked for one.
* Batching under load: a consumer with ``linger_s`` is delivered at most once per
  ``linger_s`` while versions keep coming (a projection that may lag takes batches of
  hundreds of versions instead of one per commit); ``wait_idle`` cuts the wait short.
* Isolation: one thread per consumer. A failing consumer is retried from the same position
  with exponential back-off (up to :data:`MAX_BACKOFF_S`); one that hangs holds only its own
  thread and is reported stalled by ``/healthz`` once past its ``timeout_s``. Others go on.
* New consumers start at the head of the log (a plugin installed today is not flooded with
  years of history) unless they ask for ``start="beginning"`` (a projection's backfill).
* Several processes (PostgreSQL, several API workers): each consumer and schedule is served by
  whichever process holds its session advisory lock, so nothing is delivered twice at once.
* With ``FHIRHUB_BROKER`` set, a ``resource_committed`` delivery runs as a Celery task on a
  worker (:mod:`fhirhub.core.broker`, :mod:`fhirhub.core.celery_app`); the consumer's thread waits for it, which keeps
  per-plugin order.
* With a worker process (:mod:`fhirhub.core.worker_process`), the API process's dispatcher
  (``placement="api"``) serves every consumer but those marked ``worker_process``, and the
  worker's (``placement="worker"``) serves only those, and no schedule. A consumer's
  ``companion`` runs in whichever process serves it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Connection, func, insert, select, update

from fhirhub.core.consumers import (
    DEFAULT_TIMEOUT_S,
    Consumer,
    PartialDelivery,
    Schedule,
    each_version,
)
from fhirhub.core.hookspecs import hookimpl
from fhirhub.fhir_store.database import write_transaction
from fhirhub.fhir_store.encryption import opened
from fhirhub.fhir_store.schema import dispatch_cursor, resource_version
from fhirhub.fhir_store.versions import StoredVersion

if TYPE_CHECKING:
    from fhirhub.core.hub import Hub

log = logging.getLogger("fhirhub.dispatcher")

POLL_S = 1.0  # also picks up versions committed by other processes
#: The least time between two saves of the cursors (a crash re-delivers at most this much
#: more: delivery is at least once).
CURSOR_SAVE_EVERY_S = 0.1
MAX_BACKOFF_S = 60.0
#: The most a consumer lingers, whatever its ``linger_s`` says.
MAX_LINGER_S = 60.0


def read_versions(
    conn: Connection,
    after: int,
    limit: int,
    upto: int | None = None,
    types: frozenset[str] | None = None,
) -> list[StoredVersion]:
    """Versions with ``seq`` > ``after`` (and <= ``upto``; of ``types`` only, when given),
    oldest first, at most ``limit``."""
    condition = resource_version.c.seq > after
    if upto is not None:
        condition = condition & (resource_version.c.seq <= upto)
    if types is not None:
        condition = condition & resource_version.c.resource_type.in_(sorted(types))
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
            resource_version.c.tenant,
        )
        .where(condition)
        .order_by(resource_version.c.seq)
        .limit(limit)
    ).all()
    return [
        StoredVersion(r[0], r[1], r[2], r[3], bool(r[4]), opened(conn, r[5]), r[6], r[7], r[8])
        for r in rows
    ]


def log_head(conn: Connection) -> int:
    return int(
        conn.execute(select(func.coalesce(func.max(resource_version.c.seq), 0))).scalar_one()
    )


@dataclass
class ConsumerStatus:
    """What ``/healthz`` and the status commands report of one consumer or schedule."""

    name: str
    cursor: int = 0
    delivered: int = 0
    failures: int = 0
    last_error: str | None = None
    busy_since: float | None = None  # monotonic start of the delivery running now
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def stalled(self) -> bool:
        return self.busy_since is not None and time.monotonic() - self.busy_since > self.timeout_s


class _Locks:
    """Session advisory locks on PostgreSQL, one per consumer/schedule name, held on one
    connection for the life of the process (no-ops on SQLite, which has one process)."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._conn: Any = None
        self._owned: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False

    def open(self) -> None:
        """Take locks again after :meth:`close` (the dispatcher started again)."""
        self._closed = False

    def owns(self, name: str) -> bool:
        if self._hub.store.is_sqlite or name in self._owned:
            return True
        if self._closed:  # a thread that outlived the stop takes nothing again
            return False
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        with self._lock:
            if self._conn is None:
                self._conn = self._hub.store.engine.connect()
            owned = self._conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({key})").scalar()
            self._conn.commit()
        if owned:
            self._owned.add(name)
        return bool(owned)

    def close(self) -> None:
        """The dispatcher stopped: release every lock, and take none until :meth:`open`."""
        self._closed = True
        self.release()

    def release(self) -> None:
        """Release every lock now. They are session locks: a connection returned to the pool
        keeps them (a rollback does not free them), so an API process whose dispatcher stopped
        while the process lived on (the app's shutdown, a restart) held its consumers from the
        other processes until it exited. Locks still wanted are taken again at the next step."""
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.exec_driver_sql("SELECT pg_advisory_unlock_all()")
                    self._conn.commit()
                    self._conn.close()
                except Exception:  # closing the session itself is what frees its locks
                    log.warning("Could not release the dispatcher's locks; closing the session")
                    self._conn.invalidate()
                self._conn = None
            self._owned.clear()


class _Worker:
    """One consumer's thread: read from its cursor, deliver, save the cursor, repeat."""

    def __init__(self, dispatcher: Dispatcher, consumer: Consumer, cursor: int) -> None:
        self.dispatcher = dispatcher
        self.consumer = consumer
        #: ``status.cursor`` is the saved cursor; ``position`` the last seq handled, which
        #: the cursor writer saves (up to ``consumer.durable()``) while reading goes on.
        self.status = ConsumerStatus(consumer.name, cursor, timeout_s=consumer.timeout_s)
        self.position = cursor
        self._wake = threading.Event()
        #: Set by ``hurry``: the linger is cut short (``wait_idle``, shutdown).
        self._hurry = threading.Event()
        self.idle = threading.Event()
        self._retry_at = 0.0
        #: When the last batch that reached the head of the log was delivered (``linger_s``).
        self._delivered_at = -1e9
        self._linger_failed = False
        #: Whether this process held the consumer's lock at the last step (PostgreSQL).
        self._owned = False
        #: Versions were handed over since the consumer was last told it caught up.
        self._owes_caught_up = False
        self._thread = threading.Thread(
            target=self._run, name=f"fhirhub-consumer-{consumer.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self.idle.clear()
        self._wake.set()

    def hurry(self) -> None:
        """Deliver what is there now, without lingering."""
        self._hurry.set()
        self.wake()

    def join(self, timeout: float) -> None:
        self._hurry.set()
        self._wake.set()
        self._thread.join(timeout=timeout)

    def _run(self) -> None:
        stop = self.dispatcher.stopping
        while not stop.is_set():
            self._wake.wait(timeout=POLL_S)
            self._wake.clear()
            delay = self._retry_at - time.monotonic()
            if delay > 0 and stop.wait(delay):  # the back-off, then the retry at once
                break
            # A steady feed: let versions gather until linger_s after the last delivery.
            linger = self._delivered_at + self._linger_s() - time.monotonic()
            if linger > 0:
                self._hurry.wait(linger)
            self._hurry.clear()
            if stop.is_set():
                break
            try:
                more = self._step()
            except Exception:  # the worker must survive anything (e.g. a database restart)
                log.exception("Consumer %s: reading the log failed; retrying", self.consumer.name)
                more = False
                stop.wait(POLL_S)
            if more:
                self._wake.set()
            else:
                self.idle.set()

    def _linger_s(self) -> float:
        """``consumer.linger_s`` as seconds in [0, :data:`MAX_LINGER_S`]: 0 when the plugin's
        function fails or answers no positive number (NaN, None...): its delivery goes on."""
        value = self.consumer.linger_s
        try:
            seconds = float(value() if callable(value) else value)
        except Exception:  # a plugin's bug never stops its delivery
            if not self._linger_failed:  # logged once per run of failures, not per commit
                log.exception("Consumer %s: linger_s failed; not lingering", self.consumer.name)
            self._linger_failed = True
            return 0.0
        self._linger_failed = False
        return min(seconds, MAX_LINGER_S) if seconds > 0 else 0.0

    def _step(self) -> bool:
        """Deliver one batch; True when more may be waiting."""
        consumer, hub = self.consumer, self.dispatcher.hub
        if not self.dispatcher.locks.owns(f"consumer:{consumer.name}"):
            self._owned = False
            return False
        if not self._owned:
            self._owned = True
            if not hub.store.is_sqlite:
                # Taken over from a process that stopped: its saved cursor is the truth, not
                # the one read at this process's start (which would deliver again, or move
                # the saved cursor back).
                self._reload_cursor()
        cursor = self.position
        with hub.store.read() as conn:
            if consumer.types is None:
                batch = read_versions(conn, cursor, consumer.batch_size)
                end = batch[-1].seq if batch else cursor
            else:
                # Only the consumer's types are read (the others' content is never loaded),
                # up to the head seen in this snapshot, which the cursor then reaches.
                head = log_head(conn)
                batch = (
                    read_versions(
                        conn, cursor, consumer.batch_size, upto=head, types=consumer.types
                    )
                    if head > cursor
                    else []
                )
                end = batch[-1].seq if len(batch) == consumer.batch_size else head
        if end <= cursor or not batch:
            self._caught_up()
        if end <= cursor:
            return False
        wanted = batch
        self.status.busy_since = time.monotonic()
        try:
            if wanted:
                consumer.handle(wanted)
        except Exception as exc:
            if isinstance(exc, PartialDelivery) and exc.done > self.position:
                self.position = exc.done
                self.dispatcher.cursors.wake()
            self.status.failures += 1
            delay = min(MAX_BACKOFF_S, 0.1 * 2 ** min(self.status.failures, 10))
            self._retry_at = time.monotonic() + delay
            self.status.last_error = (
                str(exc) if isinstance(exc, PartialDelivery) else f"{type(exc).__name__}: {exc}"
            )
            log.error(
                "Consumer %s failed at seq %s; retrying in %.1f s: %s",
                consumer.name,
                batch[0].seq,
                delay,
                self.status.last_error,
            )
            return False
        finally:
            self.status.busy_since = None
        # Saved by the cursor writer: a crash before it re-delivers (at least once); the
        # cursor seen in memory (wait_idle) is always the one in the table.
        self.position = end
        self.dispatcher.cursors.wake()
        self.status.delivered += len(wanted)
        self._owes_caught_up = self._owes_caught_up or bool(wanted)
        self.status.failures = 0
        self.status.last_error = None
        full = len(batch) == consumer.batch_size
        # A backlog is read without lingering; the batch that reaches the head starts it
        # (passing over other types' versions delivers nothing: it starts no linger).
        if full:
            self._delivered_at = -1e9
        elif wanted:
            self._delivered_at = time.monotonic()
        return full

    def _caught_up(self) -> None:
        """``consumer.caught_up``, once per stretch of deliveries; a failure is retried at the
        next step."""
        if not self._owes_caught_up or self.consumer.caught_up is None:
            self._owes_caught_up = False
            return
        try:
            self.consumer.caught_up()
        except Exception:  # retried at the next step; delivery goes on
            log.exception("Consumer %s: caught_up failed; retrying", self.consumer.name)
            return
        self._owes_caught_up = False

    def _reload_cursor(self) -> None:
        with self.dispatcher.hub.store.read() as conn:
            saved = conn.execute(
                select(dispatch_cursor.c.last_seq).where(
                    dispatch_cursor.c.consumer == self.consumer.name
                )
            ).scalar()
        if saved is not None:
            self.position = self.status.cursor = int(saved)


class _CursorWriter:
    """Saves the workers' positions as their cursors, all due in one transaction, on its
    own thread (see the module docstring)."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self._wake = threading.Event()
        self._hurry = threading.Event()
        #: Set by ``join``, after the workers stopped (``stopping`` is set before them: a
        #: worker still in ``handle`` then has a position to save).
        self._closing = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._closing = False
        self._thread = threading.Thread(
            target=self._run, name="fhirhub-dispatch-cursors", daemon=True
        )
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def hurry(self) -> None:
        """Save now, without waiting for :data:`CURSOR_SAVE_EVERY_S` (``wait_idle``)."""
        self._hurry.set()
        self._wake.set()

    def join(self, timeout: float) -> None:
        self._closing = True
        self._hurry.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._closing:
            self._wake.clear()  # before saving: a position moved meanwhile wakes it again
            pending = self.save()
            # A consumer with work not yet durable is looked at again shortly.
            self._wake.wait(timeout=POLL_S if pending else None)
            # Every consumer's batch wakes this thread; under a load, one save (a write
            # transaction, which on SQLite makes the sources' writers wait) per interval.
            self._hurry.wait(CURSOR_SAVE_EVERY_S)
            self._hurry.clear()
        self.save()  # what was handled before the stop, by workers that finished since

    def save(self) -> bool:
        """Save every cursor that can move; True when one waits on its consumer's durable
        point (or on a failed save)."""
        due: dict[_Worker, int] = {}
        pending = False
        for worker in list(self.dispatcher._workers.values()):
            target = worker.position
            if worker.consumer.durable is not None:
                target = min(target, worker.consumer.durable())
                pending = pending or target < worker.position
            if target > worker.status.cursor:
                due[worker] = target
        if not due:
            return pending
        try:
            with self.dispatcher.hub.store.engine.begin() as conn:
                for worker, target in due.items():
                    conn.execute(
                        update(dispatch_cursor)
                        .where(dispatch_cursor.c.consumer == worker.consumer.name)
                        .values(last_seq=target)
                    )
        except Exception:  # the database restarting: the positions stay, saved next time
            log.exception("Saving the consumers' cursors failed; retrying")
            self.dispatcher.stopping.wait(POLL_S)
            return True
        for worker, target in due.items():
            worker.status.cursor = target
        return pending


class _ScheduleRunner:
    """One schedule's thread: run it every ``every_s`` seconds while the hub serves."""

    def __init__(self, dispatcher: Dispatcher, schedule: Schedule) -> None:
        self.dispatcher = dispatcher
        self.schedule = schedule
        self.status = ConsumerStatus(schedule.name, timeout_s=schedule.timeout_s)
        self._thread = threading.Thread(
            target=self._run, name=f"fhirhub-schedule-{schedule.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout=timeout)

    def _run(self) -> None:
        stop, schedule = self.dispatcher.stopping, self.schedule
        while not stop.wait(schedule.every_s):
            if not self.dispatcher.locks.owns(f"schedule:{schedule.name}"):
                continue
            self.status.busy_since = time.monotonic()
            try:
                schedule.run(self.dispatcher.hub)
                self.status.delivered += 1
                self.status.last_error = None
            except Exception as exc:
                self.status.failures += 1
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                log.exception(
                    "Schedule %s failed; next run in %s s", schedule.name, schedule.every_s
                )
            finally:
                self.status.busy_since = None


@dataclass(eq=False)
class Dispatcher:
    hub: Hub
    consumers: dict[str, Consumer] = field(default_factory=dict)
    schedules: list[Schedule] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    _workers: dict[str, _Worker] = field(default_factory=dict)
    _runners: list[_ScheduleRunner] = field(default_factory=list)
    _companions: list[Callable[[], None]] = field(default_factory=list)
    #: Which consumers this process serves (the module docstring): "all" (one process),
    #: "api" (an API process beside a worker process) or "worker" (the worker process).
    placement: Literal["all", "api", "worker"] = "all"
    locks: _Locks = field(init=False)
    cursors: _CursorWriter = field(init=False)

    def __post_init__(self) -> None:
        self.locks = _Locks(self.hub)
        self.cursors = _CursorWriter(self)

    @property
    def running(self) -> bool:
        return bool(self._workers or self._runners)

    def start(self) -> None:
        """Start one thread per consumer and per schedule (idempotent)."""
        if self.running:
            return
        self.stopping.clear()
        self.locks.open()
        every = collect_consumers(self.hub)
        # Every consumer's cursor, also of those the other process serves: a new consumer
        # starting at "head" starts at the head of the log when the hub started, not when
        # the worker process (started later) first reads it.
        cursors = self._load_cursors(every)
        self.consumers = {
            name: consumer
            for name, consumer in every.items()
            if self.placement == "all" or consumer.worker_process == (self.placement == "worker")
        }
        self.schedules = [] if self.placement == "worker" else collect_schedules(self.hub)
        for name, consumer in self.consumers.items():
            self._workers[name] = _Worker(self, consumer, cursors[name])
        self._runners = [_ScheduleRunner(self, schedule) for schedule in self.schedules]
        for consumer in self.consumers.values():
            if consumer.companion is not None:
                self._companions.append(consumer.companion())
        self.cursors.start()
        for worker in self._workers.values():
            worker.start()
        for runner in self._runners:
            runner.start()

    def wake(self, types: set[str] | None = None) -> None:
        """Wake the consumers; with ``types`` (what a commit wrote), only those handed any of
        them. The others pass those versions at their next wake or poll: ten consumers each
        reading the log after every commit to find nothing of theirs cost the server 1-2 s of
        CPU per 1,000 writes."""
        for worker in list(self._workers.values()):  # (the worker process's link calls in)
            wanted = worker.consumer.types
            if types is None or wanted is None or not wanted.isdisjoint(types):
                worker.wake()

    def stop(self) -> None:
        self.stopping.set()
        for worker in self._workers.values():
            worker.join(timeout=10)
        for runner in self._runners:
            runner.join(timeout=10)
        self.cursors.join(timeout=10)
        for stop_companion in reversed(self._companions):
            try:
                stop_companion()
            except Exception:
                log.exception("Stopping a consumer's companion failed")
        self._companions.clear()
        self._workers.clear()
        self._runners.clear()
        self.locks.close()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every consumer has caught up with the log (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.hub.store.read() as conn:
                head = log_head(conn)
            lagging = [w for w in self._workers.values() if w.status.cursor < head]
            if not lagging:
                return True
            for worker in lagging:
                worker.hurry()
            self.cursors.hurry()
            lagging[0].idle.wait(timeout=0.05)
        return False

    def status(self) -> list[ConsumerStatus]:
        return [w.status for w in self._workers.values()] + [r.status for r in self._runners]

    def _load_cursors(self, consumers: dict[str, Consumer]) -> dict[str, int]:
        # A write transaction from the start: this one reads, then inserts, and on SQLite a
        # read transaction that another writer overtook cannot become a write one ("database
        # is locked" at once, no busy wait): plugins' start-up work writes meanwhile.
        with write_transaction(self.hub.store.engine) as conn:
            head = log_head(conn)
            known = dict(
                conn.execute(select(dispatch_cursor.c.consumer, dispatch_cursor.c.last_seq)).all()
            )
            cursors: dict[str, int] = {}
            for name, consumer in consumers.items():
                if name in known:
                    cursors[name] = int(known[name])
                    continue
                cursors[name] = head if consumer.start == "head" else 0
                conn.execute(insert(dispatch_cursor).values(consumer=name, last_seq=cursors[name]))
        return cursors


def reset_consumers(hub: Hub) -> list[str]:
    """For ``fhirhub replay``: every consumer that keeps a projection (``reset`` given) drops
    it and will be delivered the whole log again. Returns their names."""
    names: list[str] = []
    for name, consumer in collect_consumers(hub).items():
        if consumer.reset is None:
            continue
        consumer.reset()
        with write_transaction(hub.store.engine) as conn:
            updated = conn.execute(
                update(dispatch_cursor).where(dispatch_cursor.c.consumer == name).values(last_seq=0)
            )
            if updated.rowcount == 0:
                conn.execute(insert(dispatch_cursor).values(consumer=name, last_seq=0))
        names.append(name)
    return names


def collect_consumers(hub: Hub) -> dict[str, Consumer]:
    """Every consumer of this hub: one per ``resource_committed`` implementation (named after
    its plugin) and those of ``register_consumers``; a duplicate name is an error."""
    from fhirhub.core.broker import broker_delivery
    from fhirhub.core.plugins import call_hook

    remote = broker_delivery(hub)
    out: dict[str, Consumer] = {}
    for impl in hub.plugins.hook.resource_committed.get_hookimpls():
        name = impl.plugin_name
        out[name] = Consumer(name, _per_version(hub, name, impl.function, remote))
    for _plugin, consumers in call_hook(hub, "register_consumers", hub=hub):
        for consumer in consumers:
            if consumer.name in out:
                raise ValueError(f"Consumer name {consumer.name!r} is used twice")
            out[consumer.name] = consumer
    return out


def collect_schedules(hub: Hub) -> list[Schedule]:
    from fhirhub.core.plugins import call_hook

    return [
        schedule
        for _plugin, schedules in call_hook(hub, "register_schedules", hub=hub)
        for schedule in schedules
    ]


def _per_version(
    hub: Hub,
    name: str,
    function: Callable[..., Any],
    remote: Callable[[str, int], None] | None,
) -> Callable[[Sequence[StoredVersion]], None]:
    """A ``resource_committed`` implementation as a consumer: one call per version, in
    process or as a Celery round trip when a broker is configured (:func:`each_version`)."""
    if remote is not None:
        return each_version(lambda version: remote(name, version.seq))
    return each_version(lambda version: function(event=version, hub=hub))


@hookimpl
def after_commit(versions: list[StoredVersion], hub: Hub) -> None:
    """The writer's only part in delivery: wake the threads of the consumers it wrote for (and
    those of the other process, with a worker process)."""
    types = {v.resource_type for v in versions}
    if hub.dispatcher is not None:
        hub.dispatcher.wake(types)
    if hub.link is not None:
        hub.link.notify(types)
