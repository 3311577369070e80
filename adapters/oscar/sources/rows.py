"""OSCAR rows held in memory: the demo clinic (``source = "demo"``).

The rows have OSCAR's column names and values (:mod:`fhirhub.adapters.oscar.sample_clinic`
makes them), and are read with the same keyset order and joins as the database source, so
the demo goes through the mapper and the sync exactly as a real clinic's data would.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

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
from fhirhub.adapters.oscar.sources import STREAMS, Cursor, Page

ZERO = "0000-00-00 00:00:00"
#: stream -> (record type, update column or None, key column)
_SPECS: dict[str, tuple[type[OscarRecord], str | None, str]] = {
    "provider": (Provider, "lastUpdateDate", "provider_no"),
    "demographic": (Demographic, "lastUpdateDate", "demographic_no"),
    "allergies": (Allergy, "lastUpdateDate", "allergyid"),
    "drugs": (Drug, "lastUpdateDate", "drugid"),
    "measurements": (Measurement, None, "id"),
    "measurementsDeleted": (DeletedMeasurement, None, "id"),
    "appointment": (Appointment, "updatedatetime", "appointment_no"),
    "appointmentArchive": (DeletedAppointment, None, "id"),
    "casemgmt_note": (Note, "update_date", "note_id"),
}


def _stamp(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.strftime("%Y-%m-%d 00:00:00")
    return str(value or ZERO)


class RowsSource:
    """Reads OSCAR rows from ``{table: [row, ...]}``."""

    streams: tuple[str, ...] = STREAMS

    def __init__(self, rows: dict[str, list[dict[str, Any]]], kind: str = "demo") -> None:
        self.kind = kind
        self.rows = rows
        self.types = {
            str(r["type"]): str(r.get("typeDescription") or r["type"])
            for r in rows.get("measurementType", [])
        }

    def close(self) -> None:
        return None

    def read(self, stream: str, after: Cursor, limit: int, since: str | None = None) -> Page:
        record_type, updated, key = _SPECS[stream]
        table = stream if stream != "appointmentArchive" else "appointmentArchive"
        rows = list(self.rows.get(table, []))
        if stream == "appointmentArchive":
            live = {r["appointment_no"] for r in self.rows.get("appointment", [])}
            rows = [r for r in rows if r["appointment_no"] not in live]

        def position(row: dict[str, Any]) -> tuple[str, Any]:
            return (_stamp(row.get(updated)) if updated else "", row[key])

        start = (
            after.updated,
            (
                int(after.key)
                if after.key and isinstance(rows[0][key] if rows else 0, int)
                else after.key
            ),
        )
        selected = sorted(rows, key=position)
        if not after.is_start:
            selected = [r for r in selected if position(r) > start]
        if since and updated:
            selected = [r for r in selected if _stamp(r.get(updated)) >= since]
        page = selected[:limit]
        if not page:
            return Page([], after, True)
        last = page[-1]
        cursor = Cursor(_stamp(last.get(updated)) if updated else "", str(last[key]))
        return Page([self._record(stream, record_type, r) for r in page], cursor, len(page) < limit)

    def _record(
        self, stream: str, record_type: type[OscarRecord], row: dict[str, Any]
    ) -> OscarRecord:
        if stream == "demographic":
            ext = {
                str(e["key_val"]): str(e["value"])
                for e in self.rows.get("demographicExt", [])
                if e["demographic_no"] == row["demographic_no"]
            }
            return Demographic.from_row(row, ext=ext)
        if stream == "measurements":
            ext = {
                str(e["keyval"]): str(e["val"])
                for e in self.rows.get("measurementsExt", [])
                if e["measurement_id"] == row["id"]
            }
            return Measurement.from_row(row, ext=ext, type_display=self.types.get(str(row["type"])))
        if stream == "casemgmt_note":
            return Note.from_row(row, issues=self._issues(int(row["note_id"])))
        return record_type.from_row(row)

    def _issues(self, note_id: int) -> list[NoteIssue]:
        links = [
            link["id"]
            for link in self.rows.get("casemgmt_issue_notes", [])
            if link["note_id"] == note_id
        ]
        issues = {i["issue_id"]: i for i in self.rows.get("issue", [])}
        out = []
        for case_issue in self.rows.get("casemgmt_issue", []):
            if case_issue["id"] in links and case_issue["issue_id"] in issues:
                issue = issues[case_issue["issue_id"]]
                out.append(
                    NoteIssue(
                        str(issue["code"]),
                        str(issue["description"]),
                        bool(case_issue["resolved"]),
                        bool(case_issue["certain"]),
                        bool(case_issue["major"]),
                        bool(case_issue["acute"]),
                    )
                )
        return out
