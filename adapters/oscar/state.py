"""What the adapter keeps in the hub besides FHIR resources (its own tables, ``oscar_*``).

* ``oscar_cursor``: per OSCAR instance and stream, the position after the last record whose
  FHIR transaction committed (advanced only after the commit, so a crash re-reads, never skips);
* ``oscar_run``: one row per sync run (mode, counts, the error that stopped it);
* ``oscar_dead_letter``: records that failed to map, with the reason and their Task (the
  Task and a Binary of the record are the FHIR copy); resolved when the record later syncs;
* ``oscar_link``: OSCAR keys of records fhirhub created and wrote back (so the next sync
  updates the original resource instead of creating a second one);
* ``oscar_outbox``: write-backs to OSCAR, with attempts, back-off and the last error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    insert,
    select,
    update,
)

from fhirhub.adapters.oscar.sources import Cursor
from fhirhub.sdk import Hub, HubLocal, PluginDatabase

metadata = MetaData()

cursor_table = Table(
    "oscar_cursor",
    metadata,
    Column("instance", String(200), primary_key=True),
    Column("stream", String(64), primary_key=True),
    Column("updated", String(32), nullable=False, default=""),
    Column("key", String(64), nullable=False, default=""),
    Column("records", Integer, nullable=False, default=0),
    Column("synced_at", String(32), nullable=False, default=""),
)
run_table = Table(
    "oscar_run",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("instance", String(200), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("started", String(32), nullable=False),
    Column("finished", String(32)),
    Column("status", String(16), nullable=False),
    Column("records", Integer, nullable=False, default=0),
    Column("resources", Integer, nullable=False, default=0),
    Column("dead_letters", Integer, nullable=False, default=0),
    Column("warnings", Integer, nullable=False, default=0),
    Column("error", Text),
)
dead_letter_table = Table(
    "oscar_dead_letter",
    metadata,
    Column("instance", String(200), primary_key=True),
    Column("stream", String(64), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("task_id", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", String(32), nullable=False),
    Column("resolved", Integer, nullable=False, default=0),
)
link_table = Table(
    "oscar_link",
    metadata,
    Column("instance", String(200), primary_key=True),
    Column("stream", String(64), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("resource_type", String(64), nullable=False),
    Column("resource_id", String(64), nullable=False),
)
outbox_table = Table(
    "oscar_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("instance", String(200), nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("resource_id", String(64), nullable=False),
    Column("version_id", String(32), nullable=False),
    Column("status", String(16), nullable=False),  # pending | sent | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt", Float, nullable=False, default=0.0),
    Column("last_error", Text),
    Column("oscar_key", String(64)),
    Column("created", String(32), nullable=False),
    Column("updated", String(32), nullable=False),
)


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class DeadLetter:
    stream: str
    key: str
    task_id: str
    reason: str
    at: str
    resolved: bool


_DB: HubLocal[PluginDatabase] = HubLocal("oscar.database")


def database(hub: Hub) -> PluginDatabase:
    db = _DB.get(hub)
    if db is None:
        db = PluginDatabase(hub, metadata)
        _DB.set(hub, db)
    return db


class SyncState:
    """The adapter's tables for one OSCAR instance."""

    def __init__(self, hub: Hub, instance: str) -> None:
        self.db = database(hub)
        self.instance = instance

    # -- cursors --------------------------------------------------------------------------
    def cursors(self) -> dict[str, dict[str, Any]]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(cursor_table).where(cursor_table.c.instance == self.instance)
            ).mappings()
            return {row["stream"]: dict(row) for row in rows}

    def cursor(self, stream: str) -> Cursor:
        with self.db.read() as conn:
            row = conn.execute(
                select(cursor_table.c.updated, cursor_table.c.key).where(
                    cursor_table.c.instance == self.instance, cursor_table.c.stream == stream
                )
            ).first()
        return Cursor(row[0], row[1]) if row else Cursor()

    def advance(self, stream: str, cursor: Cursor, records: int) -> None:
        """Move a stream's cursor (call only after the FHIR transaction committed)."""
        with self.db.begin() as conn:
            done = conn.execute(
                update(cursor_table)
                .where(cursor_table.c.instance == self.instance, cursor_table.c.stream == stream)
                .values(
                    updated=cursor.updated,
                    key=cursor.key,
                    records=cursor_table.c.records + records,
                    synced_at=now_text(),
                )
            ).rowcount
            if not done:
                conn.execute(
                    insert(cursor_table).values(
                        instance=self.instance,
                        stream=stream,
                        updated=cursor.updated,
                        key=cursor.key,
                        records=records,
                        synced_at=now_text(),
                    )
                )

    def reset(self) -> None:
        with self.db.begin() as conn:
            conn.execute(delete(cursor_table).where(cursor_table.c.instance == self.instance))

    # -- runs ------------------------------------------------------------------------------
    def start_run(self, mode: str) -> int:
        with self.db.begin() as conn:
            result = conn.execute(
                insert(run_table).values(
                    instance=self.instance,
                    mode=mode,
                    started=now_text(),
                    status="running",
                    records=0,
                    resources=0,
                    dead_letters=0,
                    warnings=0,
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def finish_run(
        self,
        run_id: int,
        *,
        status: str,
        records: int,
        resources: int,
        dead_letters: int,
        warnings: int,
        error: str | None,
    ) -> None:
        with self.db.begin() as conn:
            conn.execute(
                update(run_table)
                .where(run_table.c.id == run_id)
                .values(
                    finished=now_text(),
                    status=status,
                    records=records,
                    resources=resources,
                    dead_letters=dead_letters,
                    warnings=warnings,
                    error=error,
                )
            )

    def runs(self, limit: int = 10) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(run_table)
                .where(run_table.c.instance == self.instance)
                .order_by(run_table.c.id.desc())
                .limit(limit)
            ).mappings()
            return [dict(r) for r in rows]

    # -- dead letters ---------------------------------------------------------------------
    def record_dead_letters(self, letters: list[DeadLetter]) -> None:
        if not letters:
            return
        with self.db.begin() as conn:
            for letter in letters:
                conn.execute(
                    delete(dead_letter_table).where(
                        dead_letter_table.c.instance == self.instance,
                        dead_letter_table.c.stream == letter.stream,
                        dead_letter_table.c.key == letter.key,
                    )
                )
            conn.execute(
                insert(dead_letter_table),
                [
                    {
                        "instance": self.instance,
                        "stream": d.stream,
                        "key": d.key,
                        "task_id": d.task_id,
                        "reason": d.reason,
                        "at": d.at,
                        "resolved": int(d.resolved),
                    }
                    for d in letters
                ],
            )

    def open_dead_letters(self, stream: str) -> dict[str, str]:
        """key -> task id of the unresolved dead letters of a stream."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(dead_letter_table.c.key, dead_letter_table.c.task_id).where(
                    dead_letter_table.c.instance == self.instance,
                    dead_letter_table.c.stream == stream,
                    dead_letter_table.c.resolved == 0,
                )
            ).all()
        return {str(k): str(t) for k, t in rows}

    def resolve_dead_letters(self, stream: str, keys: list[str]) -> None:
        if not keys:
            return
        with self.db.begin() as conn:
            conn.execute(
                update(dead_letter_table)
                .where(
                    dead_letter_table.c.instance == self.instance,
                    dead_letter_table.c.stream == stream,
                    dead_letter_table.c.key.in_(keys),
                )
                .values(resolved=1)
            )

    def dead_letters(self, *, include_resolved: bool = False, limit: int = 200) -> list[DeadLetter]:
        query = select(dead_letter_table).where(dead_letter_table.c.instance == self.instance)
        if not include_resolved:
            query = query.where(dead_letter_table.c.resolved == 0)
        with self.db.read() as conn:
            rows = conn.execute(
                query.order_by(dead_letter_table.c.at.desc()).limit(limit)
            ).mappings()
            return [
                DeadLetter(
                    r["stream"], r["key"], r["task_id"], r["reason"], r["at"], bool(r["resolved"])
                )
                for r in rows
            ]

    def dead_letter_count(self) -> int:
        with self.db.read() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(dead_letter_table)
                    .where(
                        dead_letter_table.c.instance == self.instance,
                        dead_letter_table.c.resolved == 0,
                    )
                ).scalar_one()
            )

    # -- links ----------------------------------------------------------------------------
    def links(self) -> dict[tuple[str, str], str]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(link_table.c.stream, link_table.c.key, link_table.c.resource_id).where(
                    link_table.c.instance == self.instance
                )
            ).all()
        return {(str(s), str(k)): str(r) for s, k, r in rows}

    def link(self, stream: str, key: str, resource_type: str, resource_id: str) -> None:
        with self.db.begin() as conn:
            conn.execute(
                delete(link_table).where(
                    link_table.c.instance == self.instance,
                    link_table.c.stream == stream,
                    link_table.c.key == key,
                )
            )
            conn.execute(
                insert(link_table).values(
                    instance=self.instance,
                    stream=stream,
                    key=key,
                    resource_type=resource_type,
                    resource_id=resource_id,
                )
            )

    # -- outbox ---------------------------------------------------------------------------
    def enqueue(self, resource_type: str, resource_id: str, version_id: str) -> bool:
        """Queue a write-back once per version (delivery of committed versions is at least
        once); False when that version is already queued."""
        with self.db.begin() as conn:
            exists = conn.execute(
                select(outbox_table.c.id).where(
                    and_(
                        outbox_table.c.instance == self.instance,
                        outbox_table.c.resource_type == resource_type,
                        outbox_table.c.resource_id == resource_id,
                        outbox_table.c.version_id == version_id,
                    )
                )
            ).first()
            if exists:
                return False
            stamp = now_text()
            conn.execute(
                insert(outbox_table).values(
                    instance=self.instance,
                    resource_type=resource_type,
                    resource_id=resource_id,
                    version_id=version_id,
                    status="pending",
                    attempts=0,
                    next_attempt=0.0,
                    created=stamp,
                    updated=stamp,
                )
            )
            return True

    def due(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(outbox_table)
                .where(
                    outbox_table.c.instance == self.instance,
                    outbox_table.c.status == "pending",
                    outbox_table.c.next_attempt <= time.time(),
                )
                .order_by(outbox_table.c.id)
                .limit(limit)
            ).mappings()
            return [dict(r) for r in rows]

    def outbox(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(outbox_table)
                .where(outbox_table.c.instance == self.instance)
                .order_by(outbox_table.c.id.desc())
                .limit(limit)
            ).mappings()
            return [dict(r) for r in rows]

    def outbox_result(
        self,
        row_id: int,
        *,
        status: str,
        attempts: int,
        next_attempt: float = 0.0,
        error: str | None = None,
        oscar_key: str | None = None,
    ) -> None:
        with self.db.begin() as conn:
            conn.execute(
                update(outbox_table)
                .where(outbox_table.c.id == row_id)
                .values(
                    status=status,
                    attempts=attempts,
                    next_attempt=next_attempt,
                    last_error=error,
                    oscar_key=oscar_key,
                    updated=now_text(),
                )
            )
