"""The write path's hot statements, sent straight to the SQLite driver.

Why: writing one HL7 message runs ~25 small statements (primary-key reads, one identifier
lookup, executemany inserts, savepoints). Through SQLAlchemy's ``Connection.execute`` each one
builds an execution context and a result object, which cost several times SQLite's own work
(py-spy over the MLLP benchmark: ~16% of a message was that bookkeeping). These helpers take
the same :class:`~sqlalchemy.Connection` (so the same transaction) and, on SQLite, run the SQL
on its driver connection; on other backends they go through SQLAlchemy unchanged.

The statements are plain SQL with named (``:name``) or positional (``?``) parameters, which the
``sqlite3`` module accepts natively. Driver errors are re-raised as SQLAlchemy's exception
classes (``IntegrityError``, ``OperationalError``...), so callers catch one family whichever
path ran.
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Executable, text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, StatementError

Params = Mapping[str, Any] | Sequence[Any]


_positional: dict[tuple[int, int], tuple[str, Callable[[Mapping[str, Any]], tuple[Any, ...]]]] = {}


def positional(
    statement: Executable, dialect: Dialect
) -> tuple[str, Callable[[Mapping[str, Any]], tuple[Any, ...]]]:
    """``statement`` compiled once for ``dialect`` to positional SQL, with the function that
    turns a parameter mapping into the matching tuple. ``statement`` must be a long-lived
    object: compilations are kept by its id."""
    key = (id(statement), id(dialect))
    found = _positional.get(key)
    if found is None:
        compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        names = list(compiled.positiontup or ())
        if not names:
            raise ValueError("the statement has no positional parameters")
        getter = itemgetter(*names)
        to_tuple = (lambda row: (getter(row),)) if len(names) == 1 else getter
        found = _positional[key] = (compiled.string, to_tuple)
    return found


def sqlite_driver(conn: Connection) -> sqlite3.Connection | None:
    """The ``sqlite3`` connection under ``conn``, or None on another backend."""
    if conn.dialect.name != "sqlite":
        return None
    driver = conn.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver


@functools.lru_cache(maxsize=256)
def _text(sql: str) -> Any:
    return text(sql)


def _translated(error: sqlite3.Error, sql: str, params: Any) -> StatementError:
    """The exception SQLAlchemy would have raised (``IntegrityError`` for a constraint...)."""
    return DBAPIError.instance(sql, params, error, sqlite3.Error)


def fetch_all(conn: Connection, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on ``conn``'s transaction. ``params`` are named for a mapping (``:x``),
    positional otherwise; positional SQL must use ``?`` (translated for other backends)."""
    driver = sqlite_driver(conn)
    if driver is None:
        if isinstance(params, Mapping):
            return [tuple(row) for row in conn.execute(_text(sql), dict(params))]
        marker_sql = sql.replace("?", "%s") if conn.dialect.paramstyle != "qmark" else sql
        return [tuple(row) for row in conn.exec_driver_sql(marker_sql, tuple(params))]
    try:
        return driver.execute(sql, params).fetchall()
    except sqlite3.Error as error:
        raise _translated(error, sql, params) from error


def fetch_first(conn: Connection, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
    """The first row of ``sql``, or None."""
    driver = sqlite_driver(conn)
    if driver is None:
        rows = fetch_all(conn, sql, params)
        return rows[0] if rows else None
    try:
        row: tuple[Any, ...] | None = driver.execute(sql, params).fetchone()
    except sqlite3.Error as error:
        raise _translated(error, sql, params) from error
    return row


def run_many(conn: Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """``executemany`` of positional (``?``) SQL, on the driver for SQLite."""
    driver = sqlite_driver(conn)
    if driver is None:
        marker_sql = sql.replace("?", "%s") if conn.dialect.paramstyle != "qmark" else sql
        conn.exec_driver_sql(marker_sql, list(rows))
        return
    try:
        driver.executemany(sql, rows)
    except sqlite3.Error as error:
        raise _translated(error, sql, rows[:1]) from error


_savepoint_names = itertools.count(1)


@contextmanager
def savepoint(conn: Connection) -> Iterator[None]:
    """A SAVEPOINT around the block: released when it ends normally, rolled back (and only
    it) when it raises. On SQLite the three statements go to the driver; SQLAlchemy's own
    nested-transaction bookkeeping is not involved, so do not mix this with
    ``conn.begin_nested()`` in the same block."""
    driver = sqlite_driver(conn)
    if driver is None:
        nested = conn.begin_nested()
        try:
            yield
        except BaseException:
            nested.rollback()
            raise
        nested.commit()
        return
    name = f"fh_sp_{next(_savepoint_names)}"
    try:
        driver.execute(f"SAVEPOINT {name}")
    except sqlite3.Error as error:
        raise _translated(error, "SAVEPOINT", ()) from error
    try:
        yield
    except BaseException:
        try:
            driver.execute(f"ROLLBACK TO {name}")
            driver.execute(f"RELEASE {name}")
        except sqlite3.Error:  # the transaction itself is gone; the caller's rollback ends it
            pass
        raise
    try:
        driver.execute(f"RELEASE {name}")
    except sqlite3.Error as error:
        raise _translated(error, "RELEASE", ()) from error
