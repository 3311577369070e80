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
* **In full** (:func:`fhirhub.fhir_store.projection_verify.verify_projections`, run by
  ``fhirhub verify`` and ``$verify-chain``):
  every resource's newest log version is compared with its current row (missing, stale,
  altered, orphaned rows), and the search index rows of every live resource are recomputed from
  its content and compared with the stored ones (extra, missing or altered rows).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, FromClause, select

from fhirhub.fhir_store.chain import HASH_SIZE, STORED_SIZE, entry_digest
from fhirhub.fhir_store.schema import resource_current, resource_version

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
