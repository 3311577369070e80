"""SQLite connection settings: WAL, the checkpoint interval, and their environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from fhirhub.fhir_store.database import SQLITE_WAL_AUTOCHECKPOINT_PAGES, make_engine


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
