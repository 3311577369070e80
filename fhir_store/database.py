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

PostgreSQL (``postgresql+psycopg://...``) is the scale-out store: several API processes share it.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

SQLITE_BUSY_TIMEOUT_MS = 30_000

#: WAL pages between automatic checkpoints (see the module docstring).
SQLITE_WAL_AUTOCHECKPOINT_PAGES = 10_000


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


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
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _positive_int(text: str | None, default: int) -> int:
    """``text`` as a positive integer, or ``default`` when unset or not one."""
    try:
        value = int(text) if text is not None else default
    except ValueError:
        return default
    return value if value > 0 else default
