"""Engine creation for the two supported backends.

SQLite (the embedded default) runs in WAL mode with ``synchronous=NORMAL``: a committed
transaction survives a process kill, and readers never block the single writer. A power loss
can lose the last transactions; set ``FHIRHUB_SQLITE_SYNCHRONOUS=FULL`` where that matters.
Write transactions start with ``BEGIN IMMEDIATE`` so two writers queue on the lock instead of
failing with "database is locked" when a read transaction tries to upgrade.

WAL checkpoints: SQLite copies the WAL back into the database file inside the COMMIT of
whichever transaction pushes the WAL past ``wal_autocheckpoint`` pages, and syncs the file
there. At SQLite's default of 1,000 pages (4 MB) that happened every few HL7 message groups
and was half the cost of their commits (0.4 of 0.9 ms per ADT^A01 message, measured with
``benchmarks/hl7_mllp.py`` and in-process): the index B-tree pages a stream of writes touches
are copied again at every checkpoint. At ``SQLITE_WAL_AUTOCHECKPOINT_PAGES`` (10,000 pages,
40 MB of WAL at most between checkpoints) each hot page is copied once per ten times as many
writes. ``FHIRHUB_SQLITE_WAL_AUTOCHECKPOINT`` sets it (SQLite's 1000 to restore its default).

WAL write-back (:class:`WalFlusher`, with ``synchronous=NORMAL``): a checkpoint starts by
syncing the WAL, and the 40 MB of WAL a stream of commits leaves dirty in the page cache made
that sync the longest stall a writer met (70-110 ms per checkpoint on the development VM, every
~50 HL7 messages on one connection; SQLite writes ~200 pages per ADT^A01 message). A thread per
database file syncs the WAL ``WAL_FLUSH_SECONDS`` after commits, outside every transaction, so
the checkpoint finds little left to write. It only adds syncs: what a commit promises is
unchanged (durable against a process crash at commit; against power loss from the next sync).

PostgreSQL (``postgresql+psycopg://...``) is the scale-out store: several API processes share it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from fhirhub.fhir_store.driver import fetch_first

log = logging.getLogger("fhirhub.store")

SQLITE_BUSY_TIMEOUT_MS = 30_000

#: WAL pages between automatic checkpoints (see the module docstring).
SQLITE_WAL_AUTOCHECKPOINT_PAGES = 10_000
#: Delay from a commit to the background sync of the WAL (see :class:`WalFlusher`).
WAL_FLUSH_SECONDS = 0.05
#: A flusher thread ends after this long without commits (the next commit starts another).
WAL_FLUSHER_IDLE_SECONDS = 5.0


class WalFlusher:
    """Syncs a database's ``-wal`` file in the background after commits (module docstring).

    ``poke()`` (after each commit) wakes the thread, which waits ``WAL_FLUSH_SECONDS`` (so one
    sync covers the commits of that interval), then opens the WAL by path, ``fdatasync``s it
    and closes it: no descriptor is held, and a WAL that SQLite deleted or recreated is
    simply the file found next time. The thread ends after ``WAL_FLUSHER_IDLE_SECONDS`` without
    commits; an idle database (and every engine a test suite drops) keeps no thread."""

    def __init__(
        self,
        path: str,
        delay: float = WAL_FLUSH_SECONDS,
        idle: float = WAL_FLUSHER_IDLE_SECONDS,
    ) -> None:
        self.path = path
        self.delay = delay
        self.idle = idle
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        #: Syncs done so far (for tests and tuning).
        self.flushes = 0

    def poke(self) -> None:
        if self._pid != os.getpid():  # a forked child: the parent's thread and locks are not its
            self._pid = os.getpid()
            self._wake = threading.Event()
            self._lock = threading.Lock()
            self._thread = None
        self._wake.set()
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="fhirhub-sqlite-wal-sync", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while True:
            if not self._wake.wait(self.idle):
                with self._lock:
                    if not self._wake.is_set():  # a poke after the wait timed out keeps it
                        self._thread = None
                        return
            self._wake.clear()
            time.sleep(self.delay)
            self.flush()

    def flush(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:  # no WAL now (the last connection closed): nothing to sync
            return
        try:
            os.fdatasync(fd)
            self.flushes += 1
        except OSError:
            pass  # a sync that fails here is retried by SQLite's own at the checkpoint
        finally:
            os.close(fd)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


class WriterQueue:
    """Writers of one SQLite file wait for each other here, not in SQLite's busy handler.

    SQLite's lock has no queue: a writer that finds it taken sleeps and retries, 1, 2, 5, 10,
    15, 20, 25 ms and so on up to 100 ms between tries, and the lock stays idle until its
    sleep ends, however early the holder committed. With two clients loading a hub, a third
    of the write transactions waited so (measured: 449 of 1,200 BEGINs over a millisecond);
    a writer that waits behind a long transaction (a batch of scores from the worker process)
    sleeps in 25-100 ms steps. Here a writer waits on a thread lock within the process (handed
    over at once) and on ``flock`` of ``<database>-writer.lock`` between processes (the API
    process and its worker process; tried again within 2 ms, so a wait is bounded by the
    busy timeout; the kernel releases it when a holder dies). SQLite's own lock still decides: a writer that does not queue here (a read
    transaction that turns into a write) only waits in SQLite as before.
    """

    def __init__(self, path: str | None) -> None:
        self._path = None if path is None else path + "-writer.lock"
        self._lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._pid = 0

    @contextmanager
    def held(self) -> Iterator[None]:
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        if not self._lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            raise _locked()
        try:
            if self._depth == 0:
                self._lock_file(deadline)  # (raising here leaves the depth at 0)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._unlock_file()
        finally:
            self._lock.release()

    def _lock_file(self, deadline: float) -> None:
        """Take the file lock, waiting at most until ``deadline`` (then "database is locked",
        as SQLite's busy timeout says it). ``flock`` itself cannot time out: the wait polls,
        0.1 ms after the first try and doubling up to 2 ms (SQLite's waits reach 100 ms)."""
        fd = self._file()
        if fd is None:
            return
        pause = 0.0001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _locked() from None
                time.sleep(pause)
                pause = min(pause * 2, 0.002)

    def _file(self) -> int | None:
        """The lock file's descriptor (a forked child opens its own); None where the file
        cannot be opened (a read-only folder, another user's file): SQLite's lock alone then."""
        if self._path is None:
            return None
        if self._fd is None or self._pid != os.getpid():
            try:
                # Readable and writable by whoever may write the database itself.
                mode = os.stat(self._path.removesuffix("-writer.lock")).st_mode & 0o666
            except OSError:
                mode = 0o600
            try:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, mode)
            except OSError as exc:
                log.warning("No writer queue for %s (%s): SQLite's lock alone", self._path, exc)
                self._path = None
                return None
            self._pid = os.getpid()
        return self._fd

    def _unlock_file(self) -> None:
        if self._path is not None and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


def _locked() -> Exception:
    import sqlite3

    from sqlalchemy.exc import OperationalError

    return OperationalError("BEGIN", None, sqlite3.OperationalError("database is locked"))


_queues: weakref.WeakKeyDictionary[Engine, WriterQueue] = weakref.WeakKeyDictionary()


@contextmanager
def queued_writer(engine: Engine) -> Iterator[None]:
    """Wait for this SQLite database's other writers (:class:`WriterQueue`); a no-op on
    PostgreSQL, whose writers queue in the server."""
    queue = _queues.get(engine)
    if queue is None:
        yield
        return
    with queue.held():
        yield


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction holding the write lock from its start (``BEGIN IMMEDIATE`` on SQLite):
    one that reads and then writes cannot otherwise become a write transaction once another
    writer overtook its read ("database is locked" at once, no busy wait)."""
    options = {"sqlite_begin": "IMMEDIATE"} if is_sqlite(engine) else {}
    with (
        queued_writer(engine),
        engine.connect().execution_options(**options) as conn,
        conn.begin(),
    ):
        yield conn


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` with the settings each backend needs."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, **kwargs)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _sqlite_engine(url: str, **kwargs: Any) -> Engine:
    parsed = make_url(url)
    in_memory = parsed.database in (None, "", ":memory:")
    if in_memory:
        # One shared connection, or each pooled connection would see its own empty database.
        from sqlalchemy.pool import StaticPool

        kwargs.setdefault("poolclass", StaticPool)
    elif parsed.database:
        folder = os.path.dirname(os.path.abspath(parsed.database))
        os.makedirs(folder, exist_ok=True)
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("check_same_thread", False)
    connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
    # Autocommit at the driver level: transactions are begun explicitly below.
    connect_args.setdefault("isolation_level", None)
    if kwargs.get("poolclass") is NullPool:
        kwargs.pop("poolclass")
    engine = create_engine(url, connect_args=connect_args, **kwargs)
    synchronous = os.environ.get("FHIRHUB_SQLITE_SYNCHRONOUS", "NORMAL").upper()
    if synchronous not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
        synchronous = "NORMAL"
    checkpoint_pages = _positive_int(
        os.environ.get("FHIRHUB_SQLITE_WAL_AUTOCHECKPOINT"), SQLITE_WAL_AUTOCHECKPOINT_PAGES
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA wal_autocheckpoint={checkpoint_pages}")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.execute("PRAGMA mmap_size=67108864")  # 64 MiB: mapped pages count as RSS
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        # Straight to the driver (fhir_store.driver): every unit of work begins here, and
        # SQLAlchemy's execution context cost several times SQLite's own BEGIN.
        fetch_first(conn, _BEGIN.get(mode) or f"BEGIN {mode}")

    _queues[engine] = WriterQueue(
        None if in_memory or not parsed.database else os.path.abspath(parsed.database)
    )

    if not in_memory and synchronous == "NORMAL" and parsed.database:
        flusher = WalFlusher(os.path.abspath(parsed.database) + "-wal")
        _flushers[engine] = flusher

        @event.listens_for(engine, "commit")
        def _on_commit(conn: Any) -> None:
            # Only a transaction that changed rows leaves WAL to sync (reads commit too).
            changes = conn.connection.dbapi_connection.total_changes
            if changes != conn.info.get("wal_changes"):
                conn.info["wal_changes"] = changes
                flusher.poke()

    return engine


#: The statement of each ``sqlite_begin`` mode (built once).
_BEGIN = {mode: f"BEGIN {mode}" for mode in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE")}


#: The WAL flusher of each SQLite file engine (see :class:`WalFlusher`).
_flushers: weakref.WeakKeyDictionary[Engine, WalFlusher] = weakref.WeakKeyDictionary()


def wal_flusher(engine: Engine) -> WalFlusher | None:
    """The engine's :class:`WalFlusher`; None where there is none (not SQLite, in memory, or
    ``synchronous`` other than NORMAL)."""
    return _flushers.get(engine)


def _positive_int(text: str | None, default: int) -> int:
    """``text`` as a positive integer, or ``default`` when unset or not one."""
    try:
        value = int(text) if text is not None else default
    except ValueError:
        return default
    return value if value > 0 else default
