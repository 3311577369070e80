"""The projections recomputed from the version log and compared, in full (``fhirhub verify``).

Every resource's newest log version is compared with its current row (missing, stale,
altered, orphaned rows), and the search index rows of every live resource are recomputed from
its content with the write path's extractor and compared with the stored ones (extra, missing
or altered rows). Reads check what they serve on their own (:mod:`.projections`); this finds
what nobody has read yet.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, func, select, tuple_

from fhirhub.fhir_store.encryption import opened
from fhirhub.fhir_store.projections import (
    CURRENT_ALTERED,
    CURRENT_MISSING,
    CURRENT_ORPHAN,
    CURRENT_STALE,
    INDEX_ALTERED,
    ProjectionProblem,
    ProjectionReport,
)
from fhirhub.fhir_store.schema import resource_current, resource_version
from fhirhub.fhir_store.search.index import Indexer
from fhirhub.fhir_store.search.index_tables import INDEX_TABLES

rv = resource_version


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
