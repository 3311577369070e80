"""The FHIR store: one unit of work per interaction or transaction.

Every write goes through :class:`UnitOfWork`, which

1. appends an immutable version to the log (``resource_version``),
2. updates the projections in the same database transaction: the current state
   (``resource_current``) and the search indexes,
3. tells its owner (``StoreHooks``: the hub's ``before_commit`` / ``after_commit`` hooks),
   whose dispatcher then delivers the new versions from the log to every consumer.

Writes are buffered inside the unit of work and flushed in batches (one ``executemany`` per
table) just before commit, because a 300-entry transaction Bundle would otherwise cost thousands
of round trips. Reads inside the unit of work see the buffered writes.

Ordering: on SQLite there is one writer at a time (``BEGIN IMMEDIATE``); on PostgreSQL the flush
takes a transaction-scoped advisory lock, so sequence numbers are assigned in commit order and
a reader of the log (``_history``, the dispatcher) never sees a later number commit before an
earlier one.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    bindparam,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from fhirhub.fhir_store.chain import hash_rows, read_head_link
from fhirhub.fhir_store.database import is_sqlite, queued_writer
from fhirhub.fhir_store.driver import fetch_first, positional
from fhirhub.fhir_store.encryption import ContentCipher, opened
from fhirhub.fhir_store.errors import FhirError, conflict
from fhirhub.fhir_store.projections import (
    CURRENT_ALTERED,
    CURRENT_STALE,
    ProjectionProblem,
    joined_with_log,
    matches_log,
    newest_log_row,
    raise_alarm,
)
from fhirhub.fhir_store.schema import (
    metadata,
    resource_current,
    resource_version,
    version_compartment,
)
from fhirhub.fhir_store.search.compartment import patients_in, patients_of
from fhirhub.fhir_store.search.index import Indexer, executemany
from fhirhub.fhir_store.search.parameters import SearchParameterRegistry, default_registry
from fhirhub.fhir_store.search.visibility import Visibility, patient_guarded_types
from fhirhub.fhir_store.tenancy import tenant_of
from fhirhub.fhir_store.versions import StoredVersion, format_instant

#: Arbitrary constant naming the PostgreSQL advisory lock that orders log appends.
_PG_LOG_LOCK = 0x46484952  # "FHIR"


class StoreHooks(Protocol):
    """What the store tells its owner about each unit of work. The hub implements it by
    calling the ``before_commit`` / ``after_commit`` hooks of the catalogue, so the store
    needs no plugin machinery of its own."""

    def before_commit(self, unit: UnitOfWork) -> None:
        """Inside the transaction, before its final flush: may still write, or raise to roll
        the whole unit back."""

    def after_commit(self, versions: list[StoredVersion]) -> None:
        """In the committing thread, after commit, with the versions it wrote (be quick)."""


class _Clock:
    """Strictly increasing microsecond timestamps within this process, so that two versions
    written back to back never share a ``lastUpdated`` (``_since`` would be ambiguous)."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def now(self) -> int:
        with self._lock:
            value = max(time.time_ns() // 1000, self._last + 1)
            self._last = value
            return value


def stamp(
    resource: dict[str, Any], resource_id: str, version_id: int, instant: str
) -> dict[str, Any]:
    """Return ``resource`` with ``id`` and ``meta.versionId``/``meta.lastUpdated`` set, keeping
    the client's element order (``resourceType``, ``id``, ``meta`` first when they were absent)."""
    meta = resource.get("meta")
    new_meta: dict[str, Any] = dict(meta) if isinstance(meta, dict) else {}
    new_meta["versionId"] = str(version_id)
    new_meta["lastUpdated"] = instant
    out: dict[str, Any] = {"resourceType": resource["resourceType"], "id": resource_id}
    out["meta"] = new_meta
    for key, value in resource.items():
        if key not in out:
            out[key] = value
    return out


def compact_json(resource: dict[str, Any]) -> bytes:
    """``orjson.dumps(resource)`` in a bytes object of its own size. orjson returns its
    working buffer, which keeps at least 4 KiB allocated however short the JSON: a unit of work
    holds every version's bytes until it commits, so a 20,000-entry transaction of small
    resources kept 80 MB of empty buffer. The copy costs about a microsecond."""
    return bytes(memoryview(orjson.dumps(resource)))


@dataclass
class _PendingWrite:
    version: StoredVersion
    resource: dict[str, Any] | None
    #: For a deletion: the content of the version it ends (its compartments carry over).
    ended: bytes | None = None


@dataclass
class UnitOfWork:
    """A database transaction in which FHIR resources are written and read."""

    store: FhirStore
    conn: Connection
    _pending: dict[tuple[str, str], _PendingWrite] = field(default_factory=dict)
    _order: list[_PendingWrite] = field(default_factory=list)
    committed: list[StoredVersion] = field(default_factory=list)

    # -- reads -----------------------------------------------------------------------------
    def current(
        self, resource_type: str, resource_id: str, *, for_update: bool = False
    ) -> StoredVersion | None:
        """The current version (a deleted one included), seeing this unit's own writes."""
        pending = self._pending.get((resource_type, resource_id))
        if pending is not None:
            return pending.version
        return read_current(self.conn, resource_type, resource_id, for_update=for_update)

    # -- writes ----------------------------------------------------------------------------
    def put(
        self,
        resource_type: str,
        resource_id: str,
        resource: dict[str, Any],
        *,
        method: str = "PUT",
        previous: StoredVersion | None | bool = False,
    ) -> StoredVersion:
        """Append a new version of ``resource`` (already validated) and return it.

        ``previous`` may pass the already-read current version to save a lookup.
        """
        before = self.current(resource_type, resource_id) if previous is False else previous
        assert before is None or isinstance(before, StoredVersion)
        version_id = before.version_id + 1 if before is not None else 1
        instant = self.store.clock.now()
        stamped = stamp(resource, resource_id, version_id, format_instant(instant))
        content = compact_json(stamped)
        version = StoredVersion(
            resource_type,
            resource_id,
            version_id,
            instant,
            False,
            content,
            0,
            method,
            tenant_of(stamped),
        )
        self._buffer(_PendingWrite(version, stamped))
        return version

    def delete(self, resource_type: str, resource_id: str) -> StoredVersion | None:
        """Append a deletion tombstone; None when there was nothing (live) to delete."""
        before = self.current(resource_type, resource_id)
        if before is None or before.deleted:
            return None
        instant = self.store.clock.now()
        version = StoredVersion(
            resource_type,
            resource_id,
            before.version_id + 1,
            instant,
            True,
            None,
            0,
            "DELETE",
            before.tenant,
        )
        self._buffer(_PendingWrite(version, None, before.content))
        return version

    def _buffer(self, write: _PendingWrite) -> None:
        key = (write.version.resource_type, write.version.resource_id)
        self._pending[key] = write
        self._order.append(write)

    def flush(self) -> list[StoredVersion]:
        """Write buffered versions, projections and indexes in batches."""
        if not self._order:
            return []
        writes, self._order, self._pending = self._order, [], {}
        if not is_sqlite(self.conn.engine):
            self.conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOG_LOCK})")
        cipher = self.store.cipher
        # Encryption at rest: the log and the projection hold sealed bytes.
        contents: list[bytes | None] = [
            cipher.seal(self.conn, w.version.tenant, w.version.content)
            if cipher is not None and w.version.content is not None
            else w.version.content
            for w in writes
        ]
        rows: list[dict[str, Any]] = [
            {
                "resource_type": w.version.resource_type,
                "resource_id": w.version.resource_id,
                "version_id": w.version.version_id,
                "last_updated": w.version.last_updated,
                "method": w.version.method,
                "deleted": w.version.deleted,
                "content": content,
                "tenant": w.version.tenant,
            }
            for w, content in zip(writes, contents, strict=True)
        ]
        # Tamper evidence (fhir_store.chain): chain each row to the head, under the log lock.
        hash_rows(read_head_link(self.conn), rows)
        append = _append_sqlite if is_sqlite(self.conn.engine) else _append
        try:
            seqs = append(self.conn, rows)
        except IntegrityError as exc:
            raise conflict(
                "Another request wrote a version of this resource at the same time; retry"
            ) from exc
        versions = [
            StoredVersion(
                w.version.resource_type,
                w.version.resource_id,
                w.version.version_id,
                w.version.last_updated,
                w.version.deleted,
                w.version.content,
                seq,
                w.version.method,
                w.version.tenant,
            )
            for w, seq in zip(writes, seqs, strict=True)
        ]
        # A resource written twice in one unit keeps only its last version as current.
        latest: dict[tuple[str, str], tuple[StoredVersion, dict[str, Any] | None]] = {}
        stored: dict[tuple[str, str], bytes | None] = {}
        for version, write, content in zip(versions, writes, contents, strict=True):
            latest[(version.resource_type, version.resource_id)] = (version, write.resource)
            stored[(version.resource_type, version.resource_id)] = content
        self._upsert_current([v for v, _ in latest.values()], stored)
        # A first version has no index rows to replace.
        new = {key for key, (version, _) in latest.items() if version.version_id == 1}
        references: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.store.indexer.replace_many(
            self.conn,
            [(key[0], key[1], res) for key, (_, res) in latest.items()],
            new=new,
            references=references,
            keep_unchanged=True,
        )
        self._record_compartments(versions, writes, latest, references)
        self.committed.extend(versions)
        return versions

    def _record_compartments(
        self,
        versions: Sequence[StoredVersion],
        writes: Sequence[_PendingWrite],
        latest: dict[tuple[str, str], tuple[StoredVersion, dict[str, Any] | None]],
        references: dict[tuple[str, str], list[dict[str, Any]]],
    ) -> None:
        """``version_compartment`` rows: the patients each version of a compartment type is
        in, a deletion taking those of the version it ends (see the table's comment). A
        unit's last version of each resource was just indexed: its ``references`` rows say
        the same as extracting again."""
        guarded = patient_guarded_types()
        extractor = self.store.indexer.extractor
        rows: list[dict[str, Any]] = []
        for version, write in zip(versions, writes, strict=True):
            if version.resource_type not in guarded:
                continue
            key = (version.resource_type, version.resource_id)
            indexed = references.get(key)
            if (
                indexed is not None
                and write.resource is not None
                and latest[key][0] is version
                and write.resource.get("id") == version.resource_id
            ):
                patients = patients_in(version.resource_type, version.resource_id, indexed)
            else:
                resource = write.resource
                if resource is None and write.ended is not None:
                    resource = orjson.loads(write.ended)
                if resource is None:
                    continue
                patients = patients_of(extractor, resource)
            rows.extend({"patient_id": patient, "seq": version.seq} for patient in patients)
        if rows:
            executemany(self.conn, _APPEND_COMPARTMENTS, rows)

    def _upsert_current(
        self, versions: Sequence[StoredVersion], stored: dict[tuple[str, str], bytes | None]
    ) -> None:
        rows = [
            {
                "resource_type": v.resource_type,
                "resource_id": v.resource_id,
                "version_id": v.version_id,
                "last_updated": v.last_updated,
                "deleted": v.deleted,
                "seq": v.seq,
                "content": stored[(v.resource_type, v.resource_id)],
                "tenant": v.tenant,
            }
            for v in versions
        ]
        executemany(self.conn, _upsert_current_statement(is_sqlite(self.conn.engine)), rows)


# The flush's statements, built once (building and cache-keying them per flush was a visible
# part of writing small transactions such as one HL7 message).
_APPEND_VERSIONS = insert(resource_version).returning(
    resource_version.c.seq, sort_by_parameter_order=True
)
_APPEND_COMPARTMENTS = insert(version_compartment)
_APPEND_VERSIONS_SQLITE = insert(resource_version).values(
    {
        column.name: bindparam(column.name)
        for column in resource_version.columns
        if column.name != "seq"
    }
)


def _append(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert the version rows and return their ``seq`` in row order."""
    return [row[0] for row in conn.execute(_APPEND_VERSIONS, rows)]


def _append_sqlite(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """:func:`_append` for SQLite in one driver ``executemany``. SQLAlchemy cannot batch an
    ``INSERT .. RETURNING`` whose results must follow the parameters' order on SQLite, and
    sent one statement per row. The caller holds SQLite's only write lock, so the rows take
    consecutive ``seq`` values ending at ``last_insert_rowid()``."""
    executemany(conn, _APPEND_VERSIONS_SQLITE, rows)
    last = fetch_first(conn, "SELECT last_insert_rowid()")
    assert last is not None
    first = int(last[0]) - len(rows) + 1
    return list(range(first, first + len(rows)))


@functools.cache
def _upsert_current_statement(sqlite: bool) -> Any:
    if sqlite:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:
        from sqlalchemy.dialects.postgresql import insert as dialect_insert  # type: ignore[assignment]
    statement = dialect_insert(resource_current)
    return statement.on_conflict_do_update(
        index_elements=[resource_current.c.resource_type, resource_current.c.resource_id],
        set_={
            "version_id": statement.excluded.version_id,
            "last_updated": statement.excluded.last_updated,
            "deleted": statement.excluded.deleted,
            "seq": statement.excluded.seq,
            "content": statement.excluded.content,
            "tenant": statement.excluded.tenant,
        },
    )


class FhirStore:
    """Entry point of the storage layer: owns the engine, the search registry and indexer."""

    def __init__(
        self,
        engine: Engine,
        registry: SearchParameterRegistry | None = None,
        *,
        cipher: ContentCipher | None = None,
    ) -> None:
        self.engine = engine
        self.registry = registry if registry is not None else default_registry()
        self.indexer = Indexer(self.registry)
        self.clock = _Clock()
        #: Encryption at rest (fhir_store.encryption), None when off.
        self.cipher = cipher
        if cipher is not None:
            cipher.attach()
        #: Set by the owner of the store (the hub) to hear about units of work.
        self.hooks: StoreHooks | None = None

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite(self.engine)

    def create_schema(self) -> None:
        """Create or upgrade the schema to the latest migration."""
        from fhirhub.fhir_store.migrations import upgrade

        upgrade(self.engine)

    def drop_schema(self) -> None:
        metadata.drop_all(self.engine)

    @contextmanager
    def unit_of_work(self) -> Iterator[UnitOfWork]:
        """A write transaction; commits on normal exit, rolls back on any exception."""
        options = {"sqlite_begin": "IMMEDIATE"} if self.is_sqlite else {}
        with self.engine.connect().execution_options(**options) as conn:
            try:
                with queued_writer(self.engine), conn.begin():
                    work = UnitOfWork(self, conn)
                    yield work
                    if self.hooks is not None:
                        self.hooks.before_commit(work)
                    work.flush()
            except OperationalError as exc:
                if "locked" in str(exc).lower():
                    raise FhirError(503, "The database is busy; retry", code="transient") from exc
                raise
        if work.committed and self.hooks is not None:
            self.hooks.after_commit(work.committed)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only connection inside one transaction (a consistent snapshot on WAL/MVCC)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn


# -- read helpers (usable with any connection) ------------------------------------------------

_CURRENT_COLUMNS: tuple[Any, ...] = (
    resource_current.c.resource_type,
    resource_current.c.resource_id,
    resource_current.c.version_id,
    resource_current.c.last_updated,
    resource_current.c.deleted,
    resource_current.c.content,
    resource_current.c.seq,
    literal_column("'PUT'"),
    resource_current.c.tenant,
)
_VERSION_COLUMNS = (
    resource_version.c.resource_type,
    resource_version.c.resource_id,
    resource_version.c.version_id,
    resource_version.c.last_updated,
    resource_version.c.deleted,
    resource_version.c.content,
    resource_version.c.seq,
    resource_version.c.method,
    resource_version.c.tenant,
)


def _version_from_row(conn: Connection, row: Any) -> StoredVersion:
    content = opened(conn, row[5])
    return StoredVersion(
        row[0], row[1], row[2], row[3], bool(row[4]), content, row[6], row[7], row[8]
    )


# Built once: read_current runs for every read and every written resource, and building the
# statement (then its cache key) each time cost more than SQLite's own lookup. It also reads
# what checks the row against the log (fhir_store.projections): the log row's method and hash,
# and the resource's newest version number (both primary-key / unique-index lookups).
_NEWER = resource_version.alias("newer")
_READ_CURRENT = (
    select(
        *_CURRENT_COLUMNS,
        resource_version.c.method,
        resource_version.c.hash,
        select(func.max(_NEWER.c.version_id))
        .where(
            _NEWER.c.resource_type == resource_current.c.resource_type,
            _NEWER.c.resource_id == resource_current.c.resource_id,
        )
        .scalar_subquery(),
    )
    .select_from(joined_with_log())
    .where(
        resource_current.c.resource_type == bindparam("resource_type"),
        resource_current.c.resource_id == bindparam("resource_id"),
    )
)
_READ_CURRENT_FOR_UPDATE = _READ_CURRENT.with_for_update(of=resource_current)


def _checked_current(
    conn: Connection, resource_type: str, resource_id: str, row: Any
) -> StoredVersion:
    """The current row as a version if it matches its log entry and is the newest version;
    otherwise the log's newest version (when that matches its own digest), with an alarm, so
    that what decides visibility (tenant, deletion) and what is served is the log's. A log row
    that does not match its digest either is refused (``fhirhub verify`` names it)."""
    method, stored_hash, newest = row[9], row[10], row[11]
    if newest == row[2] and matches_log(
        resource_type, resource_id, row[2], row[3], row[4], row[8], row[5], method, stored_hash
    ):
        return _version_from_row(conn, row)
    reference = f"{resource_type}/{resource_id}"
    kind = CURRENT_STALE if newest is not None and newest != row[2] else CURRENT_ALTERED
    raise_alarm(
        conn,
        ProjectionProblem(kind, reference, "the current row does not match the version log"),
    )
    logged = newest_log_row(conn, resource_type, resource_id)
    if logged is None:
        raise FhirError(
            500,
            f"The stored state of {reference} does not match the version log and is not "
            "served; an administrator must run `fhirhub verify`",
            code="exception",
        )
    return _version_from_row(conn, logged)


def read_current(
    conn: Connection, resource_type: str, resource_id: str, *, for_update: bool = False
) -> StoredVersion | None:
    if conn.dialect.name == "sqlite":  # through the driver (fhir_store.driver): every written
        # resource reads its current version, and SQLAlchemy's per-statement work was most of
        # that read's cost
        sql, to_tuple = positional(_READ_CURRENT, conn.dialect)
        found = fetch_first(
            conn, sql, to_tuple({"resource_type": resource_type, "resource_id": resource_id})
        )
        return _checked_current(conn, resource_type, resource_id, found) if found else None
    query = _READ_CURRENT_FOR_UPDATE if for_update else _READ_CURRENT
    row = conn.execute(query, {"resource_type": resource_type, "resource_id": resource_id}).first()
    return _checked_current(conn, resource_type, resource_id, row) if row is not None else None


def read_version(
    conn: Connection, resource_type: str, resource_id: str, version_id: int
) -> StoredVersion | None:
    row = conn.execute(
        select(*_VERSION_COLUMNS).where(
            resource_version.c.resource_type == resource_type,
            resource_version.c.resource_id == resource_id,
            resource_version.c.version_id == version_id,
        )
    ).first()
    return _version_from_row(conn, row) if row is not None else None


def read_history(
    conn: Connection,
    resource_type: str | None = None,
    resource_id: str | None = None,
    *,
    since: int | None = None,
    at: int | None = None,
    count: int = 50,
    offset: int = 0,
    max_seq: int | None = None,
    visibility: Visibility | None = None,
) -> tuple[list[StoredVersion], int]:
    """Versions newest first, and the total number matching.

    ``visibility`` keeps only versions the caller may see: its tenant's (by the log's
    ``tenant`` column, so tombstones are filtered too), its types, and for a patient context
    the versions that were in the patient's compartment when written (``version_compartment``).

    ``since``: only versions updated at or after it. ``at``: the versions that were current at
    that instant (one per resource), per http://hl7.org/fhir/R4/http.html#history.
    """

    conditions = []
    if resource_type is not None:
        conditions.append(resource_version.c.resource_type == resource_type)
    if resource_id is not None:
        conditions.append(resource_version.c.resource_id == resource_id)
    if since is not None:
        conditions.append(resource_version.c.last_updated >= since)
    if max_seq is not None:
        conditions.append(resource_version.c.seq <= max_seq)
    conditions.extend(_history_restriction(resource_type, visibility))
    if at is not None:
        newer = resource_version.alias("newer")
        conditions.append(resource_version.c.last_updated <= at)
        conditions.append(
            ~select(newer.c.seq)
            .where(
                newer.c.resource_type == resource_version.c.resource_type,
                newer.c.resource_id == resource_version.c.resource_id,
                newer.c.last_updated <= at,
                newer.c.seq > resource_version.c.seq,
            )
            .exists()
        )
    where = and_(*conditions) if conditions else None
    base = select(*_VERSION_COLUMNS)
    total_query = select(func.count()).select_from(resource_version)
    if where is not None:
        base = base.where(where)
        total_query = total_query.where(where)
    rows = conn.execute(
        base.order_by(resource_version.c.seq.desc()).limit(count).offset(offset)
    ).all()
    total = conn.execute(total_query).scalar_one()
    return [_version_from_row(conn, r) for r in rows], int(total)


def _history_restriction(
    resource_type: str | None, visibility: Visibility | None
) -> list[ColumnElement[bool]]:
    if visibility is None or visibility.unrestricted:
        return []
    from fhirhub.fhir_store.tenancy import SHARED_TYPES

    log = resource_version.c
    out: list[ColumnElement[bool]] = []
    if visibility.types is not None:
        out.append(log.resource_type.in_(sorted(visibility.types)))
    if visibility.hidden_types:
        out.append(~log.resource_type.in_(sorted(visibility.hidden_types)))
    if visibility.tenant is not None:
        shared = and_(log.resource_type.in_(sorted(SHARED_TYPES)), log.tenant.is_(None))
        out.append(or_(log.tenant == visibility.tenant, shared))
    if visibility.patient is not None:
        in_compartment = select(version_compartment.c.seq).where(
            version_compartment.c.patient_id == visibility.patient
        )
        out.append(
            or_(
                ~log.resource_type.in_(sorted(patient_guarded_types())),
                log.seq.in_(in_compartment),
            )
        )
    return out


def mark_dispatched(conn: Connection, consumer: str, seq: int) -> None:
    """Advance a dispatch cursor (kept here so the schema has one owner)."""
    from fhirhub.fhir_store.schema import dispatch_cursor

    updated = conn.execute(
        update(dispatch_cursor).where(dispatch_cursor.c.consumer == consumer).values(last_seq=seq)
    )
    if updated.rowcount == 0:
        conn.execute(insert(dispatch_cursor).values(consumer=consumer, last_seq=seq))
