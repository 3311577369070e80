"""SQLite connection settings: WAL, the checkpoint interval, their environment overrides, and
the background sync of the WAL."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from fhirhub.fhir_store import database
from fhirhub.fhir_store.database import (
    SQLITE_WAL_AUTOCHECKPOINT_PAGES,
    WalFlusher,
    make_engine,
    wal_flusher,
    write_transaction,
)
from fhirhub.fhir_store.errors import FhirError
from fhirhub.fhir_store.store import FhirStore


def pragma(path: Path, name: str) -> object:
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            return conn.execute(text(f"PRAGMA {name}")).scalar()
    finally:
        engine.dispose()


def test_a_file_database_runs_in_wal_mode_with_rare_checkpoints(tmp_path: Path) -> None:
    assert pragma(tmp_path / "a.db", "journal_mode") == "wal"
    assert pragma(tmp_path / "a.db", "wal_autocheckpoint") == SQLITE_WAL_AUTOCHECKPOINT_PAGES
    assert pragma(tmp_path / "a.db", "synchronous") == 1  # NORMAL


@pytest.mark.parametrize(("value", "expected"), [("1000", 1000), ("0", 10_000), ("x", 10_000)])
def test_the_checkpoint_interval_can_be_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, expected: int
) -> None:
    monkeypatch.setenv("FHIRHUB_SQLITE_WAL_AUTOCHECKPOINT", value)
    assert pragma(tmp_path / "b.db", "wal_autocheckpoint") == expected


def test_writes_past_the_interval_are_checkpointed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The WAL does not grow without bound: SQLite checkpoints at the interval."""
    monkeypatch.setenv("FHIRHUB_SQLITE_WAL_AUTOCHECKPOINT", "50")
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x BLOB)"))
        for _ in range(40):
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (randomblob(16000))"))
        with engine.connect() as conn:
            busy, log, checkpointed = conn.execute(text("PRAGMA wal_checkpoint(PASSIVE)")).one()
        assert busy == 0
        assert log < 40 * 4  # the WAL was reset along the way: far fewer frames than written
    finally:
        engine.dispose()


def _wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_commits_that_write_have_the_wal_synced_in_the_background(tmp_path: Path) -> None:
    """The checkpoint's WAL sync finds little left to write: a thread syncs the WAL shortly
    after write commits (not after read-only ones) and ends when commits stop."""
    engine = make_engine(f"sqlite:///{tmp_path / 'd.db'}")
    flusher = wal_flusher(engine)
    assert flusher is not None and flusher.path == str(tmp_path / "d.db-wal")
    flusher.idle = 0.3
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x BLOB)"))
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (randomblob(16000))"))
        assert _wait_until(lambda: flusher.flushes >= 1)
        assert _wait_until(lambda: flusher._thread is None)  # idle: the thread is gone
        synced = flusher.flushes
        for _ in range(3):
            with engine.begin() as conn:
                conn.execute(text("SELECT count(*) FROM t")).scalar()
        time.sleep(3 * flusher.delay)
        assert flusher.flushes == synced and flusher._thread is None  # reads sync nothing
        with engine.begin() as conn:  # a new commit starts a new thread
            conn.execute(text("INSERT INTO t VALUES (randomblob(16000))"))
        assert _wait_until(lambda: flusher.flushes > synced)
    finally:
        engine.dispose()


def test_no_wal_flusher_where_commits_sync_themselves_or_nothing_is_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FHIRHUB_SQLITE_SYNCHRONOUS", "FULL")
    for engine in (make_engine("sqlite://"), make_engine(f"sqlite:///{tmp_path / 'e.db'}")):
        assert wal_flusher(engine) is None
        engine.dispose()
    # A WAL that is not there (the last connection closed) is skipped without an error.
    flusher = WalFlusher(str(tmp_path / "missing.db-wal"))
    flusher.flush()
    assert flusher.flushes == 0


def test_a_forked_child_that_commits_syncs_its_wal_with_its_own_thread(tmp_path: Path) -> None:
    """A process forked from one whose flusher thread runs (a worker pool that forks) gets no
    copy of that thread: its first write commit starts one."""
    engine = make_engine(f"sqlite:///{tmp_path / 'f.db'}")
    flusher = wal_flusher(engine)
    assert flusher is not None
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x BLOB)"))
        assert flusher._thread is not None  # running in this process
        engine.dispose(close=False)  # the child must not share the parent's connections
        pid = os.fork()
        if pid == 0:  # the child: exit status 0 when its commit got synced
            ok = False
            try:
                before = flusher.flushes
                with engine.begin() as conn:
                    conn.execute(text("INSERT INTO t VALUES (randomblob(1000))"))
                ok = _wait_until(lambda: flusher.flushes >= 1 + before)
            finally:
                os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        engine.dispose()


def test_a_write_transaction_begins_immediately_and_a_busy_one_is_a_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``BEGIN IMMEDIATE`` (sent to the driver, not through SQLAlchemy) takes the write lock
    at once; a second writer that cannot get it within the busy timeout is told to retry
    (503), not handed a bare driver error."""
    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "busy.db"
    engine = make_engine(f"sqlite:///{path}")
    store = FhirStore(engine)
    store.create_schema()
    try:
        with write_transaction(engine):
            other = sqlite3.connect(path, timeout=0.05, isolation_level=None)
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            other.close()
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(FhirError) as raised, store.unit_of_work():
                pass
            assert raised.value.status == 503
        finally:
            holder.execute("ROLLBACK")
            holder.close()
    finally:
        engine.dispose()


def _lock_file_is_free(path: Path) -> bool:
    """Whether another writer could take the database's writer lock now (a descriptor of its
    own: ``flock`` locks of two open files conflict, even in one process)."""
    fd = os.open(str(path) + "-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def test_writers_queue_on_a_lock_file_held_for_the_transaction(tmp_path: Path) -> None:
    """A write transaction holds the database's writer lock file from before its BEGIN to its
    end, committed or rolled back, so writers of other processes wait in the kernel's queue
    (woken as it ends) rather than in SQLite's sleeping busy handler."""
    path = tmp_path / "queue.db"
    engine = make_engine(f"sqlite:///{path}")
    store = FhirStore(engine)
    store.create_schema()
    try:
        assert _lock_file_is_free(path)
        with write_transaction(engine):
            assert not _lock_file_is_free(path)
        assert _lock_file_is_free(path)
        with pytest.raises(RuntimeError), store.unit_of_work():
            assert not _lock_file_is_free(path)
            raise RuntimeError("rolled back")
        assert _lock_file_is_free(path)
        with store.unit_of_work() as work:  # nested in one thread: held until the outer ends
            work.put("Patient", "p1", {"resourceType": "Patient"})
            with write_transaction(make_engine(f"sqlite:///{tmp_path / 'other.db'}")):
                pass
            assert not _lock_file_is_free(path)
        assert _lock_file_is_free(path)
    finally:
        engine.dispose()


def test_a_writer_killed_mid_transaction_holds_nobody_up(tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    engine = make_engine(f"sqlite:///{path}")
    FhirStore(engine).create_schema()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from fhirhub.fhir_store.database import make_engine, write_transaction\n"
            f"engine = make_engine('sqlite:///{path}')\n"
            "with write_transaction(engine):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        done = threading.Event()

        def write() -> None:
            with write_transaction(engine) as conn:
                conn.execute(text("CREATE TABLE after_the_kill (x INTEGER)"))
            done.set()

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        assert not done.wait(0.3)  # queued behind the other process
        started = time.monotonic()
        holder.kill()
        assert done.wait(10), "the lock of a killed writer was not released"
        assert time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()
        engine.dispose()


def test_a_writer_queued_past_the_busy_timeout_is_told_to_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_MS", 50)
    engine = make_engine(f"sqlite:///{tmp_path / 'slow.db'}")
    store = FhirStore(engine)
    store.create_schema()
    outcome: list[int] = []

    def second_writer() -> None:
        try:
            with store.unit_of_work():
                outcome.append(200)
        except FhirError as exc:
            outcome.append(exc.status)

    try:
        with write_transaction(engine):
            other = threading.Thread(target=second_writer)
            other.start()
            other.join(5)
        assert outcome == [503]
    finally:
        engine.dispose()


def test_a_failed_file_lock_leaves_the_queue_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "flaky.db"
    engine = make_engine(f"sqlite:///{path}")
    FhirStore(engine).create_schema()
    real = fcntl.flock
    failures = [OSError(37, "No locks available")]

    def flaky(fd: int, operation: int) -> None:
        if failures:
            raise failures.pop()
        real(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flaky)
    try:
        with pytest.raises(OSError), write_transaction(engine):
            pass
        with write_transaction(engine):  # the next writer takes the file lock again
            assert not _lock_file_is_free(path)
        assert _lock_file_is_free(path)
    finally:
        engine.dispose()


def test_a_writer_of_another_process_past_the_busy_timeout_is_told_to_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_MS", 100)
    path = tmp_path / "held.db"
    engine = make_engine(f"sqlite:///{path}")
    store = FhirStore(engine)
    store.create_schema()
    other = os.open(str(path) + "-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(other, fcntl.LOCK_EX)  # as a writer of another process holds it
    try:
        started = time.monotonic()
        with pytest.raises(FhirError) as raised, store.unit_of_work():
            pass
        assert raised.value.status == 503
        assert time.monotonic() - started < 5
    finally:
        os.close(other)
        engine.dispose()
