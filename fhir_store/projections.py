"""The projections checked against the version log: on every read, and in full by ``verify``.

The log is hash-chained (:mod:`fhirhub.fhir_store.chain`), but reads and searches are answered
from projections (``resource_current`` and the search index tables), which nothing chains: a
person with database access could edit a current row's content, or its ``tenant`` column and
so move a resource into another tenant's view, and the chain would still verify.

Two defences, both here:

* **On read.** Every current row read to be served is joined to the log row it claims to be
  (``resource_current.seq``) and its fields are hashed as that row's digest is
  (:func:`~fhirhub.fhir_store.chain.entry_digest`: type, id, version, time, deletion, tenant,
  content). A row whose digest differs, or that is not its resource's newest version, is never
  served: a read falls back to the log's newest version of the resource when that one matches
  its own digest (so the tenant and content that decide visibility are the log's), a search
  leaves the row out; either way an alarm is recorded (:func:`alarms`) and logged. The check
  costs one primary-key join and one SHA-256 of the stored bytes per served resource.
* **In full** (:func:`verify_projections`, run by ``fhirhub verify`` and ``$verify-chain``):
  every resource's newest log version is compared with its current row (missing, stale,
  altered, orphaned rows), and the search index rows of every live resource are recomputed from
  its content and compared with the stored ones (extra, missing or altered rows).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, FromClause, func, select, tuple_

from fhirhub.fhir_store.chain import HASH_SIZE, STORED_SIZE, entry_digest
from fhirhub.fhir_store.encryption import opened
from fhirhub.fhir_store.schema import resource_current, resource_version
from fhirhub.fhir_store.search.index import Indexer
from fhirhub.fhir_store.search.index_tables import INDEX_TABLES

log = logging.getLogger("fhirhub.integrity")

rv = resource_version

# -- kinds of problem ----------------------------------------------------------------------------

CURRENT_ALTERED = "current-altered"  # the current row differs from the log version it names
CURRENT_STALE = "current-stale"  # the current row is not the resource's newest version
CURRENT_MISSING = "current-missing"  # a resource in the log has no current row
CURRENT_ORPHAN = "current-orphan"  # a current row whose version is not in the log
INDEX_ALTERED = "index-altered"  # search index rows differ from those the content gives


@dataclass(frozen=True)
class ProjectionProblem:
    kind: str
    reference: str  # Type/id
    detail: str

    def describe(self) -> str:
        return f"{self.kind} at {self.reference}: {self.detail}"


@dataclass
class ProjectionReport:
    """The result of :func:`verify_projections`."""

    resources: int = 0  # current rows and log resources compared
    indexed: int = 0  # live resources whose index rows were recomputed
    problems: list[ProjectionProblem] = field(default_factory=list)
    truncated: bool = False

    @property
    def intact(self) -> bool:
        return not self.problems

    def add(self, problem: ProjectionProblem, limit: int) -> None:
        if len(self.problems) < limit:
            self.problems.append(problem)
        else:
            self.truncated = True

    def summary(self) -> str:
        state = "match the log" if self.intact else f"{len(self.problems)} problem(s)"
        return (
            f"projections: {self.resources} resources, {self.indexed} indexed resources "
            f"recomputed: {state}"
        )


# -- alarms --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alarm:
    """A projection row that a read refused to serve."""

    at: float  # time.time()
    problem: ProjectionProblem


class _Alarms:
    """Recent alarms per engine (bounded), so a health check can report them."""

    def __init__(self) -> None:
        self._by_engine: weakref.WeakKeyDictionary[Engine, deque[Alarm]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def record(self, engine: Engine, problem: ProjectionProblem) -> None:
        log.error("Integrity alarm: %s (not served; run `fhirhub verify`)", problem.describe())
        with self._lock:
            found = self._by_engine.get(engine)
            if found is None:
                found = self._by_engine[engine] = deque(maxlen=100)
            found.append(Alarm(time.time(), problem))

    def of(self, engine: Engine) -> list[Alarm]:
        with self._lock:
            return list(self._by_engine.get(engine, ()))

    def clear(self, engine: Engine) -> None:
        with self._lock:
            self._by_engine.pop(engine, None)


_ALARMS = _Alarms()


def alarms(engine: Engine) -> list[Alarm]:
    """Rows refused on read since the process started (or :func:`clear_alarms`)."""
    return _ALARMS.of(engine)


def clear_alarms(engine: Engine) -> None:
    """Forget the alarms (after the projections were rebuilt by ``fhirhub replay``)."""
    _ALARMS.clear(engine)


def raise_alarm(conn: Connection, problem: ProjectionProblem) -> None:
    _ALARMS.record(conn.engine, problem)


# -- the check on read ---------------------------------------------------------------------------


def checked_columns(current: FromClause = resource_current) -> tuple[Any, ...]:
    """Columns to select next to a current row's own so that :func:`matches_log` can check it:
    select them from :func:`joined_with_log` (the log row may be absent: an orphan)."""
    return (
        current.c.version_id.label("chk_version"),
        current.c.last_updated.label("chk_updated"),
        current.c.deleted.label("chk_deleted"),
        current.c.tenant.label("chk_tenant"),
        rv.c.method.label("chk_method"),
        rv.c.hash.label("chk_hash"),
    )


def joined_with_log(current: FromClause = resource_current) -> FromClause:
    """``current`` outer-joined to the log row it names (a primary-key lookup per row)."""
    return current.outerjoin(rv, rv.c.seq == current.c.seq)


def matches_log(
    resource_type: str,
    resource_id: str,
    version_id: int,
    last_updated: int,
    deleted: bool,
    tenant: str | None,
    content: bytes | memoryview | None,
    method: str | None,
    stored_hash: bytes | memoryview | None,
) -> bool:
    """Whether a current row's fields hash to the digest of the log row it names."""
    if method is None or stored_hash is None or len(stored_hash) != STORED_SIZE:
        return False
    digest = entry_digest(
        resource_type,
        resource_id,
        int(version_id),
        int(last_updated),
        method,
        bool(deleted),
        tenant,
        bytes(content) if content is not None else None,
    )
    return digest == bytes(stored_hash[:HASH_SIZE])


def row_matches_log(row: Any, resource_type: str, resource_id: str, content: Any) -> bool:
    """:func:`matches_log` for a result row that selected :func:`checked_columns`."""
    return matches_log(
        resource_type,
        resource_id,
        row.chk_version,
        row.chk_updated,
        row.chk_deleted,
        row.chk_tenant,
        content,
        row.chk_method,
        row.chk_hash,
    )


def refuse_row(conn: Connection, resource_type: str, resource_id: str) -> None:
    """Record that a search left a current row out: it does not match its log entry."""
    raise_alarm(
        conn,
        ProjectionProblem(
            CURRENT_ALTERED,
            f"{resource_type}/{resource_id}",
            "the current row does not match its log entry (left out of a search)",
        ),
    )


_LOG_COLUMNS = (
    rv.c.resource_type,
    rv.c.resource_id,
    rv.c.version_id,
    rv.c.last_updated,
    rv.c.deleted,
    rv.c.content,
    rv.c.seq,
    rv.c.method,
    rv.c.tenant,
    rv.c.hash,
)


def newest_log_row(conn: Connection, resource_type: str, resource_id: str) -> Any | None:
    """The newest log row of a resource if it matches its own digest, else None. The columns
    are those of ``store._VERSION_COLUMNS``, then ``hash``."""
    row = conn.execute(
        select(*_LOG_COLUMNS)
        .where(rv.c.resource_type == resource_type, rv.c.resource_id == resource_id)
        .order_by(rv.c.version_id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    if not matches_log(
        row.resource_type,
        row.resource_id,
        row.version_id,
        row.last_updated,
        row.deleted,
        row.tenant,
        row.content,
        row.method,
        row.hash,
    ):
        return None
    return row


# -- the full check ------------------------------------------------------------------------------


def _newest_versions() -> Any:
    latest = (
        select(rv.c.resource_type, rv.c.resource_id, func.max(rv.c.version_id).label("version"))
        .group_by(rv.c.resource_type, rv.c.resource_id)
        .subquery()
    )
    return latest


def _keyset(conn: Connection, query: Any, key: Sequence[Any], chunk: int) -> Iterator[Any]:
    """Rows of ``query`` ordered by ``key`` in pages of ``chunk`` (bounded memory)."""
    last: tuple[Any, ...] | None = None
    while True:
        page = query.order_by(*key).limit(chunk)
        if last is not None:
            page = page.where(tuple_(*key) > tuple_(*last))
        rows = conn.execute(page).all()
        yield from rows
        if len(rows) < chunk:
            return
        last = tuple(rows[-1][: len(key)])


def verify_projections(
    engine: Engine, indexer: Indexer, *, chunk: int = 500, max_problems: int = 50
) -> ProjectionReport:
    """Compare every current row and every search index row with what the log gives."""
    report = ProjectionReport()
    with engine.connect() as conn, conn.begin():
        _check_current(conn, report, chunk, max_problems)
        _check_orphans(conn, report, chunk, max_problems)
        _check_indexes(conn, indexer, report, chunk, max_problems)
    return report


def _check_current(conn: Connection, report: ProjectionReport, chunk: int, limit: int) -> None:
    """Each resource's newest log version against its current row."""
    rc = resource_current
    latest = _newest_versions()
    newest = rv.alias("newest")
    query = (
        select(
            latest.c.resource_type,
            latest.c.resource_id,
            newest.c.seq,
            newest.c.version_id,
            newest.c.last_updated,
            newest.c.deleted,
            newest.c.tenant,
            newest.c.content,
            rc.c.seq.label("c_seq"),
            rc.c.version_id.label("c_version"),
            rc.c.last_updated.label("c_updated"),
            rc.c.deleted.label("c_deleted"),
            rc.c.tenant.label("c_tenant"),
            rc.c.content.label("c_content"),
        )
        .select_from(
            latest.join(
                newest,
                (newest.c.resource_type == latest.c.resource_type)
                & (newest.c.resource_id == latest.c.resource_id)
                & (newest.c.version_id == latest.c.version),
            ).outerjoin(
                rc,
                (rc.c.resource_type == latest.c.resource_type)
                & (rc.c.resource_id == latest.c.resource_id),
            )
        )
        .subquery()
    )
    key = (query.c.resource_type, query.c.resource_id)
    for row in _keyset(conn, select(query), key, chunk):
        report.resources += 1
        reference = f"{row.resource_type}/{row.resource_id}"
        if row.c_seq is None:
            report.add(
                ProjectionProblem(
                    CURRENT_MISSING,
                    reference,
                    f"version {row.version_id} is in the log but the resource has no current row",
                ),
                limit,
            )
            continue
        if row.c_version != row.version_id or row.c_seq != row.seq:
            report.add(
                ProjectionProblem(
                    CURRENT_STALE,
                    reference,
                    f"the current row is version {row.c_version} (seq {row.c_seq}); the log's "
                    f"newest is version {row.version_id} (seq {row.seq})",
                ),
                limit,
            )
            continue
        differs = [
            name
            for name, current, logged in (
                ("lastUpdated", row.c_updated, row.last_updated),
                ("deleted flag", bool(row.c_deleted), bool(row.deleted)),
                ("tenant", row.c_tenant, row.tenant),
                ("content", _bytes(row.c_content), _bytes(row.content)),
            )
            if current != logged
        ]
        if differs:
            report.add(
                ProjectionProblem(
                    CURRENT_ALTERED,
                    reference,
                    f"the current row's {', '.join(differs)} differ(s) from log seq {row.seq}",
                ),
                limit,
            )


def _check_orphans(conn: Connection, report: ProjectionReport, chunk: int, limit: int) -> None:
    """Current rows of resources the log has never seen."""
    rc = resource_current
    unknown = ~(
        select(rv.c.seq)
        .where(rv.c.resource_type == rc.c.resource_type, rv.c.resource_id == rc.c.resource_id)
        .exists()
    )
    query = select(rc.c.resource_type, rc.c.resource_id).where(unknown)
    for row in _keyset(conn, query, (rc.c.resource_type, rc.c.resource_id), chunk):
        report.resources += 1
        report.add(
            ProjectionProblem(
                CURRENT_ORPHAN,
                f"{row.resource_type}/{row.resource_id}",
                "a current row with no version in the log",
            ),
            limit,
        )


def _bytes(value: bytes | memoryview | None) -> bytes | None:
    return None if value is None else bytes(value)


def _check_indexes(
    conn: Connection, indexer: Indexer, report: ProjectionReport, chunk: int, limit: int
) -> None:
    """Recompute each live resource's index rows from its (log-checked) current content and
    compare with the stored rows; rows of resources with no live current row are extra."""
    rc = resource_current
    query = select(rc.c.resource_type, rc.c.resource_id, rc.c.content, rc.c.deleted)
    for batch in _batches(
        _keyset(conn, query, (rc.c.resource_type, rc.c.resource_id), chunk), chunk
    ):
        expected: dict[tuple[str, str], Counter[tuple[str, tuple[Any, ...]]]] = {}
        for row in batch:
            key = (row.resource_type, row.resource_id)
            rows: Counter[tuple[str, tuple[Any, ...]]] = Counter()
            plain = opened(conn, row.content)
            if not row.deleted and plain is not None:
                resource = {**orjson.loads(plain), "resourceType": key[0], "id": key[1]}
                for kind, kind_rows in indexer.extractor.extract(resource, None).items():
                    columns = INDEX_TABLES[kind].columns.keys()
                    rows.update((kind, _normal(r.get(c) for c in columns)) for r in kind_rows)
                report.indexed += 1
            expected[key] = rows
        stored = _stored_index_rows(conn, list(expected))
        for key, rows in expected.items():
            found = stored.get(key, Counter())
            if found != rows:
                missing = sum((rows - found).values())
                extra = sum((found - rows).values())
                report.add(
                    ProjectionProblem(
                        INDEX_ALTERED,
                        f"{key[0]}/{key[1]}",
                        f"{missing} search index row(s) missing and {extra} unexpected "
                        "compared with the resource's content",
                    ),
                    limit,
                )
    _check_stray_index_rows(conn, report, limit)


def _normal(values: Any) -> tuple[Any, ...]:
    """Index values compared across the round trip (floats as stored, text as text)."""
    return tuple(
        float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v for v in values
    )


def _batches(rows: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _stored_index_rows(
    conn: Connection, keys: list[tuple[str, str]]
) -> dict[tuple[str, str], Counter[tuple[str, tuple[Any, ...]]]]:
    out: dict[tuple[str, str], Counter[tuple[str, tuple[Any, ...]]]] = {}
    for kind, table in INDEX_TABLES.items():
        owner = tuple_(table.c.resource_type, table.c.resource_id)
        for row in conn.execute(select(table).where(owner.in_(keys))):
            key = (row.resource_type, row.resource_id)
            out.setdefault(key, Counter())[(kind, _normal(row))] += 1
    return out


def _check_stray_index_rows(conn: Connection, report: ProjectionReport, limit: int) -> None:
    """Index rows that belong to no current resource (a search could match them)."""
    rc = resource_current
    for kind, table in INDEX_TABLES.items():
        stray = (
            select(table.c.resource_type, table.c.resource_id)
            .where(
                ~select(rc.c.resource_id)
                .where(
                    rc.c.resource_type == table.c.resource_type,
                    rc.c.resource_id == table.c.resource_id,
                )
                .exists()
            )
            .distinct()
            .limit(limit)
        )
        for row in conn.execute(stray):
            report.add(
                ProjectionProblem(
                    INDEX_ALTERED,
                    f"{row.resource_type}/{row.resource_id}",
                    f"{kind} index rows of a resource that has no current row",
                ),
                limit,
            )


__all__ = [
    "Alarm",
    "ProjectionProblem",
    "ProjectionReport",
    "alarms",
    "clear_alarms",
    "verify_projections",
]
