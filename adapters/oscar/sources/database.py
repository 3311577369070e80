"""Reading OSCAR's MariaDB/MySQL database directly (a read-only replica).

Every stream is a keyset scan ``(update column, primary key) > cursor`` in that order, so a
run that stops part-way resumes exactly where it was, and rows with equal timestamps are
neither skipped nor read twice. The session is ``READ ONLY``: the adapter never writes to
OSCAR's tables (the write-back goes through OSCAR's own API).

Tables without an update column are followed by their growing primary key: ``measurements``
(OSCAR never edits a measurement: it moves it to ``measurementsDeleted`` and inserts a new
one), ``measurementsDeleted``, and ``appointmentArchive`` (OSCAR copies an appointment there
before deleting it). A ``casemgmt_note`` revision is a new row, its ``update_date`` later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from fhirhub.adapters.oscar.model import (
    Allergy,
    Appointment,
    DeletedAppointment,
    DeletedMeasurement,
    Demographic,
    Drug,
    Measurement,
    Note,
    NoteIssue,
    OscarRecord,
    Provider,
)
from fhirhub.adapters.oscar.sources import STREAMS, Cursor, Page, SourceError

ZERO = "0000-00-00 00:00:00"


@dataclass(frozen=True)
class StreamQuery:
    """How one stream is read: ``select`` (with alias ``t``), the update expression (None
    for id-keyed streams), the key column, and the column ``--since`` filters on."""

    record: type[OscarRecord]
    select: str
    updated: str | None
    key: str
    key_is_int: bool
    since: str | None


QUERIES: dict[str, StreamQuery] = {
    "provider": StreamQuery(
        Provider,
        "SELECT t.* FROM provider t",
        "t.lastUpdateDate",
        "t.provider_no",
        False,
        "t.lastUpdateDate",
    ),
    "demographic": StreamQuery(
        Demographic,
        "SELECT t.* FROM demographic t",
        "t.lastUpdateDate",
        "t.demographic_no",
        True,
        "t.lastUpdateDate",
    ),
    "allergies": StreamQuery(
        Allergy,
        "SELECT t.* FROM allergies t",
        "t.lastUpdateDate",
        "t.allergyid",
        True,
        "t.lastUpdateDate",
    ),
    "drugs": StreamQuery(
        Drug, "SELECT t.* FROM drugs t", "t.lastUpdateDate", "t.drugid", True, "t.lastUpdateDate"
    ),
    "measurements": StreamQuery(
        Measurement, "SELECT t.* FROM measurements t", None, "t.id", True, "t.dateEntered"
    ),
    "measurementsDeleted": StreamQuery(
        DeletedMeasurement,
        "SELECT t.* FROM measurementsDeleted t",
        None,
        "t.id",
        True,
        "t.dateDeleted",
    ),
    "appointment": StreamQuery(
        Appointment,
        "SELECT t.* FROM appointment t",
        f"COALESCE(t.updatedatetime, t.createdatetime, '{ZERO}')",
        "t.appointment_no",
        True,
        f"COALESCE(t.updatedatetime, t.createdatetime, '{ZERO}')",
    ),
    "appointmentArchive": StreamQuery(
        DeletedAppointment,
        "SELECT t.id, t.appointment_no, t.demographic_no, t.updatedatetime FROM appointmentArchive t"
        " LEFT JOIN appointment live ON live.appointment_no = t.appointment_no"
        " WHERE live.appointment_no IS NULL",
        None,
        "t.id",
        True,
        None,
    ),
    "casemgmt_note": StreamQuery(
        Note, "SELECT t.* FROM casemgmt_note t", "t.update_date", "t.note_id", True, "t.update_date"
    ),
}


def _stamp(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.strftime("%Y-%m-%d 00:00:00")
    return str(value or ZERO)


class DatabaseSource:
    kind = "database"
    streams: tuple[str, ...] = STREAMS

    def __init__(self, url: str, *, timeout_s: float = 30.0) -> None:
        args: dict[str, Any] = {}
        if url.startswith("mysql"):
            args = {"connect_timeout": int(timeout_s), "read_timeout": int(max(timeout_s, 60))}
        self.engine: Engine = create_engine(
            url, pool_pre_ping=True, pool_recycle=3600, connect_args=args
        )
        if self.engine.dialect.name in ("mysql", "mariadb"):
            event.listen(self.engine, "connect", _read_only_session)
        self._types: dict[str, str] | None = None

    def close(self) -> None:
        self.engine.dispose()

    def read(self, stream: str, after: Cursor, limit: int, since: str | None = None) -> Page:
        query = QUERIES[stream]
        params: dict[str, Any] = {"limit": limit}
        where: list[str] = []
        key = (int(after.key) if after.key else -1) if query.key_is_int else after.key
        if query.updated is not None:
            where.append(f"({query.updated}, {query.key}) > (:updated, :key)")
            params.update(updated=after.updated or ZERO, key=key)
            if after.is_start:
                where[-1] = f"({query.updated} >= :updated)"
        else:
            where.append(f"{query.key} > :key")
            params["key"] = key
        if since and query.since:
            where.append(f"{query.since} >= :since")
            params["since"] = since
        joiner = " AND " if " WHERE " in query.select else " WHERE "
        order = f"{query.updated}, {query.key}" if query.updated else query.key
        sql = f"{query.select}{joiner}{' AND '.join(where)} ORDER BY {order} LIMIT :limit"
        try:
            with self.engine.connect() as conn:
                rows = [dict(r) for r in conn.execute(text(sql), params).mappings()]
                records = self._records(conn, stream, query, rows)
        except SQLAlchemyError as exc:
            raise SourceError(
                f"reading {stream}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
            ) from exc
        if not rows:
            return Page([], after, True)
        last = rows[-1]
        updated_value = ""
        if query.updated is not None:
            column = query.updated.split(".")[-1] if query.updated.startswith("t.") else None
            if column:
                updated_value = _stamp(last.get(column))
            else:  # the appointment's COALESCE
                updated_value = _stamp(last.get("updatedatetime") or last.get("createdatetime"))
        cursor = Cursor(updated_value, str(last[query.key.split(".")[-1]]))
        return Page(records, cursor, len(rows) < limit)

    def _records(
        self, conn: Connection, stream: str, query: StreamQuery, rows: list[dict[str, Any]]
    ) -> list[OscarRecord]:
        if stream == "demographic" and rows:
            ext = self._demographic_ext(conn, [r["demographic_no"] for r in rows])
            return [
                Demographic.from_row(r, ext=ext.get(int(r["demographic_no"]), {})) for r in rows
            ]
        if stream == "measurements" and rows:
            ext = self._measurement_ext(conn, [r["id"] for r in rows])
            types = self.measurement_types(conn)
            return [
                Measurement.from_row(
                    r, ext=ext.get(int(r["id"]), {}), type_display=types.get(str(r["type"]))
                )
                for r in rows
            ]
        if stream == "casemgmt_note" and rows:
            issues = self._note_issues(conn, [r["note_id"] for r in rows])
            return [Note.from_row(r, issues=issues.get(int(r["note_id"]), [])) for r in rows]
        return [query.record.from_row(r) for r in rows]

    def measurement_types(self, conn: Connection) -> dict[str, str]:
        if self._types is None:
            rows = conn.execute(
                text("SELECT type, typeDisplayName, typeDescription FROM measurementType")
            ).all()
            self._types = {}
            for kind, display, description in rows:
                self._types.setdefault(str(kind), str(description or display or kind))
        return self._types

    @staticmethod
    def _in(values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
        names = {f"v{i}": v for i, v in enumerate(values)}
        return ", ".join(f":{n}" for n in names), names

    def _demographic_ext(
        self, conn: Connection, numbers: Sequence[Any]
    ) -> dict[int, dict[str, str]]:
        marks, params = self._in(numbers)
        rows = conn.execute(
            text(
                f"SELECT demographic_no, key_val, value FROM demographicExt WHERE demographic_no IN ({marks}) ORDER BY date_time, id"
            ),
            params,
        ).all()
        out: dict[int, dict[str, str]] = {}
        for number, key, value in rows:
            if key and value is not None:
                out.setdefault(int(number), {})[str(key)] = str(value)
        return out

    def _measurement_ext(self, conn: Connection, ids: Sequence[Any]) -> dict[int, dict[str, str]]:
        marks, params = self._in(ids)
        rows = conn.execute(
            text(
                f"SELECT measurement_id, keyval, val FROM measurementsExt WHERE measurement_id IN ({marks}) ORDER BY id"
            ),
            params,
        ).all()
        out: dict[int, dict[str, str]] = {}
        for measurement_id, key, value in rows:
            out.setdefault(int(measurement_id), {})[str(key)] = str(value)
        return out

    def _note_issues(self, conn: Connection, note_ids: Sequence[Any]) -> dict[int, list[NoteIssue]]:
        marks, params = self._in(note_ids)
        rows = conn.execute(
            text(
                "SELECT cin.note_id, i.code, i.description, ci.resolved, ci.certain, ci.major, ci.acute"
                " FROM casemgmt_issue_notes cin JOIN casemgmt_issue ci ON ci.id = cin.id"
                f" JOIN issue i ON i.issue_id = ci.issue_id WHERE cin.note_id IN ({marks}) ORDER BY cin.note_id, ci.id"
            ),
            params,
        ).all()
        out: dict[int, list[NoteIssue]] = {}
        for note_id, code, description, resolved, certain, major, acute in rows:
            out.setdefault(int(note_id), []).append(
                NoteIssue(
                    str(code),
                    str(description or ""),
                    bool(resolved),
                    bool(certain),
                    bool(major),
                    bool(acute),
                )
            )
        return out


def _read_only_session(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET SESSION TRANSACTION READ ONLY")
    finally:
        cursor.close()


def rows_as_dicts(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [dict(r) for r in rows]
