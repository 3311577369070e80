"""The node's catalogue of stored instances: what C-FIND, C-MOVE/C-GET, QIDO-RS and WADO-RS
look up (UIDs -> file digest, plus the matching keys of PS3.4 C.6.1.1 / C.6.2.1).

It is a small SQLite database beside the files it describes (``<data_dir>/dicom/index.db``),
not part of the FHIR store: it is derived from the files and can be rebuilt from them
(:meth:`InstanceIndex.rebuild`), just as the FHIR ImagingStudy is derived from the instances.
One row per SOP Instance and tenant; study and series levels are aggregates over it.

The catalogue is also the archive's record of ownership. Each row carries the tenant it was
stored for (the calling AE's, the uploader's) and the Patient the hub recorded it under, and
every read takes a :class:`TenantView` that the SQL filters by before matching, grouping and
paging. Who may see an instance therefore never depends on a FHIR resource a caller can write
(an ImagingStudy naming someone else's Study Instance UID gives nothing), and the same SOP
Instance UID stored by two tenants is two rows, two objects: neither store touches the other.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Columns: (DICOM keyword, column name, level). Level decides which query levels may match on
#: it and return it (PATIENT < STUDY < SERIES < IMAGE).
ATTRIBUTES: tuple[tuple[str, str, str], ...] = (
    ("PatientID", "patient_id", "PATIENT"),
    ("IssuerOfPatientID", "patient_id_issuer", "PATIENT"),
    ("PatientName", "patient_name", "PATIENT"),
    ("PatientBirthDate", "birth_date", "PATIENT"),
    ("PatientSex", "sex", "PATIENT"),
    ("StudyInstanceUID", "study_uid", "STUDY"),
    ("StudyDate", "study_date", "STUDY"),
    ("StudyTime", "study_time", "STUDY"),
    ("AccessionNumber", "accession_number", "STUDY"),
    ("StudyID", "study_id", "STUDY"),
    ("StudyDescription", "study_description", "STUDY"),
    ("ReferringPhysicianName", "referring_physician", "STUDY"),
    ("SeriesInstanceUID", "series_uid", "SERIES"),
    ("Modality", "modality", "SERIES"),
    ("SeriesNumber", "series_number", "SERIES"),
    ("SeriesDescription", "series_description", "SERIES"),
    ("BodyPartExamined", "body_part", "SERIES"),
    ("SOPInstanceUID", "sop_uid", "IMAGE"),
    ("SOPClassUID", "sop_class_uid", "IMAGE"),
    ("InstanceNumber", "instance_number", "IMAGE"),
    ("Rows", "rows", "IMAGE"),
    ("Columns", "columns", "IMAGE"),
    ("NumberOfFrames", "frames", "IMAGE"),
)
LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
COLUMN = {keyword: column for keyword, column, _level in ATTRIBUTES}
LEVEL_OF = {keyword: level for keyword, _column, level in ATTRIBUTES}
UNIQUE_KEY = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}
INTEGER_COLUMNS = {"series_number", "instance_number", "rows", "columns", "frames"}
DATE_KEYWORDS = {"StudyDate", "PatientBirthDate"}
TIME_KEYWORDS = {"StudyTime"}

#: ``PRAGMA user_version`` of the current layout; 0 is the layout keyed by SOP Instance UID
#: alone (one tenant's store could replace another's row), migrated on opening.
SCHEMA_VERSION = 1

_TABLE = f"""
CREATE TABLE IF NOT EXISTS instance (
    {", ".join(f"{col} {'INTEGER' if col in INTEGER_COLUMNS else 'TEXT'}" for _k, col, _l in ATTRIBUTES if col != "sop_uid")},
    sop_uid TEXT NOT NULL,
    tenant TEXT NOT NULL DEFAULT '',
    transfer_syntax TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    recorded INTEGER NOT NULL DEFAULT 0,
    patient TEXT,
    stored_at REAL NOT NULL DEFAULT (julianday('now')),
    calling_aet TEXT,
    called_aet TEXT,
    PRIMARY KEY (tenant, sop_uid)
)
"""
#: Columns added to the layout later, added in place to an older catalogue (NULL: not known).
_ADDED_COLUMNS = {"calling_aet": "TEXT", "called_aet": "TEXT"}
_INDEXES = """
CREATE INDEX IF NOT EXISTS instance_study ON instance (study_uid, series_uid);
CREATE INDEX IF NOT EXISTS instance_patient ON instance (patient_id);
CREATE INDEX IF NOT EXISTS instance_study_date ON instance (study_date);
CREATE INDEX IF NOT EXISTS instance_accession ON instance (accession_number);
"""


@dataclass(frozen=True)
class TenantView:
    """The part of the catalogue one caller sees: one tenant's rows (``""``: the rows no
    tenant owns) or every tenant's (``tenant=None``: the system, a hub-wide admin or node),
    and within it, for a patient-facing app, one Patient's (the FHIR Patient id the hub
    recorded the instance under)."""

    tenant: str | None
    patient: str | None = None

    def clause(self) -> tuple[list[str], list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if self.tenant is not None:
            clauses.append("tenant = ?")
            args.append(self.tenant)
        if self.patient is not None:
            clauses.append("patient = ?")
            args.append(self.patient)
        return clauses, args


#: Every instance of every tenant.
ALL_TENANTS = TenantView(None)


@dataclass(frozen=True)
class StoredInstance:
    sop_uid: str
    study_uid: str
    series_uid: str
    sop_class_uid: str
    transfer_syntax: str
    digest: str
    #: The AE titles of the C-STORE association that brought it (PS3.8 7.1.1.5 / 7.1.1.6:
    #: AE, at most 16 characters); None for STOW-RS, uploads and a rebuilt catalogue.
    calling_aet: str | None = None
    called_aet: str | None = None


class QueryError(ValueError):
    """An identifier C-FIND / QIDO cannot evaluate (PS3.4 C.4.1.1.4 failure 0xC000 range)."""


class InstanceIndex:
    """Thread-safe access to the catalogue (one connection, serialised; queries are ~ms).

    ``default_tenant`` is the tenant that rows of a catalogue from before tenants were
    recorded for in FHIR (``FHIRHUB_DEFAULT_TENANT``); it is written into them once, when
    the layout is migrated."""

    def __init__(self, path: Path, *, default_tenant: str = "") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        exists = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'instance'"
        ).fetchone()
        if exists and version < SCHEMA_VERSION:
            self._migrate(default_tenant)
        self._conn.execute(_TABLE)
        present = {row[1] for row in self._conn.execute("PRAGMA table_info(instance)")}
        for column, kind in _ADDED_COLUMNS.items():
            if column not in present:
                self._conn.execute(f"ALTER TABLE instance ADD COLUMN {column} {kind}")
        self._conn.executescript(_INDEXES)
        self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _migrate(self, default_tenant: str) -> None:
        """Re-key a catalogue keyed by SOP Instance UID alone by (tenant, SOP Instance UID).
        Rows without a tenant were recorded in FHIR for the default tenant; they keep it."""
        old = {row[1] for row in self._conn.execute("PRAGMA table_info(instance)")}
        wanted = [c for _k, c, _l in ATTRIBUTES]
        wanted += ["transfer_syntax", "digest", "size", "recorded", "stored_at"]
        copied = [c for c in wanted if c in old]
        tenant = "coalesce(tenant, ?)" if "tenant" in old else "?"
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.execute("ALTER TABLE instance RENAME TO instance_unkeyed")
            self._conn.execute(_TABLE)
            self._conn.execute(
                f"INSERT INTO instance ({', '.join(copied)}, tenant) "
                f"SELECT {', '.join(copied)}, {tenant} FROM instance_unkeyed",
                (default_tenant,),
            )
            self._conn.execute("DROP TABLE instance_unkeyed")  # and its indexes
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def upsert(
        self,
        values: dict[str, Any],
        *,
        transfer_syntax: str,
        digest: str,
        size: int,
        recorded: bool = True,
        tenant: str = "",
        calling_aet: str | None = None,
        called_aet: str | None = None,
    ) -> None:
        """Catalogue an instance for ``tenant`` (the Organization it was stored for, "" for
        none), replacing that tenant's earlier copy of the same SOP Instance only. The tenant
        is kept so that an instance recorded in FHIR only after a crash still goes to it;
        ``calling_aet``/``called_aet`` are the C-STORE association's AE titles (None for
        STOW-RS and uploads), which routing (imaging plugins) may select by."""
        columns = [c for _k, c, _l in ATTRIBUTES]
        row = [values.get(c) for c in columns]
        row += [transfer_syntax, digest, size, int(recorded), tenant or "", calling_aet, called_aet]
        names = columns + [
            "transfer_syntax",
            "digest",
            "size",
            "recorded",
            "tenant",
            "calling_aet",
            "called_aet",
        ]
        sql = (
            f"INSERT INTO instance ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
            f"ON CONFLICT (tenant, sop_uid) DO UPDATE SET "
            + ", ".join(f"{n} = excluded.{n}" for n in names if n not in ("sop_uid", "tenant"))
            + ", patient = NULL"  # new content: the Patient is known again once recorded
        )
        with self._lock:
            self._conn.execute(sql, row)

    def mark_recorded(self, tenant: str, sop_uids: Sequence[str], patient: str | None) -> None:
        """The instances' FHIR transaction committed; ``patient`` is the id of the Patient
        their ImagingStudy names, which decides what a patient-facing app sees."""
        with self._lock:
            self._conn.executemany(
                "UPDATE instance SET recorded = 1, patient = ? WHERE tenant = ? AND sop_uid = ?",
                [(patient, tenant, u) for u in sop_uids],
            )

    def unrecorded(self) -> list[tuple[str, str, str]]:
        """(sop_uid, digest, tenant) of instances stored but not yet in FHIR (after a
        crash)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT sop_uid, digest, tenant FROM instance WHERE recorded = 0 ORDER BY stored_at"
            ).fetchall()
        return [(str(a), str(b), str(c or "")) for a, b, c in rows]

    def recorded_digest(self, tenant: str, sop_uid: str) -> str | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT digest FROM instance WHERE tenant = ? AND sop_uid = ? AND recorded = 1",
                (tenant, sop_uid),
            ).fetchone()
        return str(row[0]) if row else None

    def delete(self, tenant: str, sop_uid: str) -> None:
        with self._lock:
            self._conn.execute(
                "DELETE FROM instance WHERE tenant = ? AND sop_uid = ?", (tenant, sop_uid)
            )

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM instance").fetchone()[0])

    def instances(
        self,
        view: TenantView,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
    ) -> list[StoredInstance]:
        """The instances of a study (series, instance) that ``view`` sees (WADO-RS)."""
        clauses, args = view.clause()
        sql = (
            "SELECT sop_uid, study_uid, series_uid, sop_class_uid, transfer_syntax, digest, "
            "calling_aet, called_aet "
            f"FROM instance WHERE {' AND '.join([*clauses, 'study_uid = ?'])}"
        )
        args.append(study_uid)
        if series_uid:
            sql += " AND series_uid = ?"
            args.append(series_uid)
        if sop_uid:
            sql += " AND sop_uid = ?"
            args.append(sop_uid)
        sql += " ORDER BY series_number, series_uid, instance_number, sop_uid"
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [StoredInstance(*row) for row in rows]

    def instances_matching(
        self, view: TenantView, level: str, identifier: dict[str, str]
    ) -> list[StoredInstance]:
        """Every instance ``view`` sees under the entities an identifier selects (C-MOVE /
        C-GET)."""
        where, args = _where(level, identifier, view)
        sql = (
            "SELECT sop_uid, study_uid, series_uid, sop_class_uid, transfer_syntax, digest "
            f"FROM instance {where} ORDER BY study_uid, series_number, instance_number"
        )
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [StoredInstance(*row) for row in rows]

    def find(
        self,
        view: TenantView,
        level: str,
        identifier: dict[str, str],
        *,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Match ``identifier`` (keyword -> DICOM matching string) at ``level`` among the rows
        ``view`` sees; return one dict per matching entity with the level's attributes plus
        the aggregate counts (NumberOfStudyRelated..., ModalitiesInStudy) of PS3.4 C.3.4.

        The view is part of the WHERE clause, so counts, grouping and ``limit``/``offset``
        apply to what the caller may see only: paging cannot reveal other tenants' rows."""
        if level not in LEVELS:
            raise QueryError(f"Unknown query level {level!r}")
        depth = LEVELS.index(level)
        shown = [(k, c) for k, c, lvl in ATTRIBUTES if LEVELS.index(lvl) <= depth]
        group = COLUMN[UNIQUE_KEY[level]]
        # SQLite "bare columns": with one min() aggregate the other columns come from that
        # row; the level's attributes are equal on every row of the entity, so any row will do.
        select = [c for _k, c in shown]
        if level in ("PATIENT", "STUDY"):
            select += [
                "count(DISTINCT study_uid)",
                "count(DISTINCT series_uid)",
                "count(*)",
                "group_concat(DISTINCT modality)",
            ]
        elif level == "SERIES":
            select += ["0", "0", "count(*)", "NULL"]
        else:
            select += ["0", "0", "1", "NULL"]
        where, args = _where(level, identifier, view)
        sql = f"SELECT {', '.join(select)}, min(rowid) FROM instance {where} GROUP BY {group}"
        order = {
            "PATIENT": "patient_id",
            "STUDY": "study_date DESC, study_uid",
            "SERIES": "series_number, series_uid",
            "IMAGE": "instance_number, sop_uid",
        }[level]
        sql += f" ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [limit, offset]
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        results = []
        for row in rows:
            item: dict[str, Any] = {k: row[i] for i, (k, _c) in enumerate(shown)}
            studies, series, instances, modalities = row[len(shown) : len(shown) + 4]
            if level == "PATIENT":
                item["NumberOfPatientRelatedStudies"] = studies
                item["NumberOfPatientRelatedSeries"] = series
                item["NumberOfPatientRelatedInstances"] = instances
            elif level == "STUDY":
                item["NumberOfStudyRelatedSeries"] = series
                item["NumberOfStudyRelatedInstances"] = instances
                item["ModalitiesInStudy"] = sorted(set((modalities or "").split(",")) - {""})
            elif level == "SERIES":
                item["NumberOfSeriesRelatedInstances"] = instances
            results.append(item)
        return results

    def rebuild(
        self, entries: Iterable[tuple[dict[str, Any], str, str, int]], *, tenant: str = ""
    ) -> int:
        """Replace the catalogue with ``(values, transfer_syntax, digest, size)`` rows, all
        for ``tenant``: the files do not say which tenant stored them."""
        count = 0
        with self._lock:
            self._conn.execute("DELETE FROM instance")
        for values, syntax, digest, size in entries:
            self.upsert(values, transfer_syntax=syntax, digest=digest, size=size, tenant=tenant)
            count += 1
        return count


def _where(level: str, identifier: dict[str, str], view: TenantView) -> tuple[str, list[Any]]:
    """SQL for DICOM attribute matching (PS3.4 C.2.2.2): single value, UID list (``\\``),
    wildcard (``*``, ``?``), range (``a-b`` for dates and times); empty means universal.
    The view's tenant (and patient) come first: nothing outside it is ever matched."""
    depth = LEVELS.index(level) if level in LEVELS else 3
    clauses, args = view.clause()
    for keyword, raw in identifier.items():
        if keyword not in COLUMN or raw is None:
            continue
        value = str(raw).strip()
        if value in ("", "*"):
            continue
        if LEVELS.index(LEVEL_OF[keyword]) > depth:
            raise QueryError(f"{keyword} cannot be matched at the {level} level")
        column = COLUMN[keyword]
        if keyword.endswith("UID") and "\\" in value:
            uids = [u for u in value.split("\\") if u]
            clauses.append(f"{column} IN ({', '.join('?' * len(uids))})")
            args += uids
        elif (keyword in DATE_KEYWORDS or keyword in TIME_KEYWORDS) and "-" in value:
            low, _, high = value.partition("-")
            if low:
                clauses.append(f"{column} >= ?")
                args.append(low)
            if high:
                clauses.append(f"{column} <= ?")
                args.append(high + ("~" if keyword in TIME_KEYWORDS else ""))
        elif "*" in value or "?" in value:
            escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append(f"{column} LIKE ? ESCAPE '\\'")
            args.append(escaped.replace("*", "%").replace("?", "_"))
        elif column in INTEGER_COLUMNS:
            try:
                args.append(int(value))
            except ValueError as exc:
                raise QueryError(f"{keyword} must be an integer, not {value!r}") from exc
            clauses.append(f"{column} = ?")
        elif keyword == "PatientName":
            clauses.append(f"{column} = ? COLLATE NOCASE")
            args.append(value)
        else:
            clauses.append(f"{column} = ?")
            args.append(value)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", args


def index_values(ds: Any, headers: Any) -> dict[str, Any]:
    """The catalogue row of an instance from its dataset and mapped headers."""
    values: dict[str, Any] = {}
    for keyword, column, _level in ATTRIBUTES:
        element = ds.get(keyword)
        if element is None or element == "":
            values[column] = None
            continue
        if column in INTEGER_COLUMNS:
            try:
                values[column] = int(float(str(element)))
            except ValueError:
                values[column] = None
        else:
            values[column] = str(element).strip()
    values["study_uid"] = headers.study_uid
    values["series_uid"] = headers.series_uid
    values["sop_uid"] = headers.sop_uid
    values["sop_class_uid"] = headers.sop_class_uid
    return values


__all__: Sequence[str] = (
    "ALL_TENANTS",
    "InstanceIndex",
    "QueryError",
    "StoredInstance",
    "TenantView",
    "index_values",
)
