"""The write path's driver-level statements behave like SQLAlchemy's on both backends:
same transaction, same exception classes, savepoints that roll back only their block."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from fhirhub.core.hub import Hub
from fhirhub.fhir_store.driver import fetch_all, fetch_first, run_many, savepoint, sqlite_driver
from fhirhub.fhir_store.schema import dispatch_cursor

# A scratch use of a small store table: cursors named "test-...", keyed by name.
ROW = f"INSERT INTO {dispatch_cursor.name} (consumer, last_seq) VALUES (?, ?)"
COUNT = f"SELECT count(*) FROM {dispatch_cursor.name} WHERE last_seq >= ?"


def test_statements_join_the_callers_transaction(hub: Hub) -> None:
    with pytest.raises(RuntimeError), hub.store.unit_of_work() as uow:
        run_many(uow.conn, ROW, [("test-a", 9_000_001), ("test-b", 9_000_002)])
        assert fetch_first(uow.conn, COUNT, (9_000_000,)) == (2,)
        raise RuntimeError("roll back")
    with hub.store.read() as conn:
        assert fetch_all(conn, COUNT, (9_000_000,)) == [(0,)]
        assert (sqlite_driver(conn) is not None) == hub.store.is_sqlite


def test_named_parameters(hub: Hub) -> None:
    with hub.store.read() as conn:
        assert fetch_first(conn, "SELECT :a + :b", {"a": 1, "b": 2}) == (3,)


def test_a_savepoint_rolls_back_only_its_block(hub: Hub) -> None:
    with hub.store.unit_of_work() as uow:
        run_many(uow.conn, ROW, [("test-kept", 9_000_011)])
        with pytest.raises(IntegrityError), savepoint(uow.conn):
            run_many(uow.conn, ROW, [("test-gone", 9_000_012)])
            run_many(uow.conn, ROW, [("test-kept", 9_000_014)])  # duplicate name
        with savepoint(uow.conn):
            run_many(uow.conn, ROW, [("test-released", 9_000_013)])
    with hub.store.read() as conn:
        rows = fetch_all(
            conn,
            f"SELECT last_seq FROM {dispatch_cursor.name} WHERE last_seq > ? ORDER BY last_seq",
            (9e6,),
        )
    assert rows == [(9_000_011,), (9_000_013,)]


def test_driver_errors_are_sqlalchemy_errors(hub: Hub) -> None:
    with hub.store.read() as conn, pytest.raises(DBAPIError) as caught:
        fetch_all(conn, "SELECT * FROM no_such_table")
    assert "no_such_table" in str(caught.value)
    if hub.store.is_sqlite:
        assert isinstance(caught.value, OperationalError)
