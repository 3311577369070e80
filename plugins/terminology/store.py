"""Writing a loaded code system version into the concept tables, and reading it back.

A load writes in chunks, each its own short transaction, while the version row says
``loading``: the hub keeps serving writes meanwhile (SQLite has one writer), and readers never
see a half-loaded version. The last step marks it ``active`` and ``latest`` in one transaction;
a failed load removes what it wrote. Reloading the same (url, version) replaces it; a new
version leaves the old one queryable by version.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from sqlalchemy import Connection, delete, exists, insert, select, update

from fhirhub.plugins.terminology.concepts import version_row
from fhirhub.plugins.terminology.model import (
    MAX_POSTED_PAIRS,
    CodeSystemData,
    closure,
    index_words,
)
from fhirhub.plugins.terminology.tables import (
    CONCEPT_TABLES,
    SHARED,
    closure_table,
    concept_table,
    parent_table,
    property_table,
    version_table,
    word_table,
)
from fhirhub.sdk import PluginDatabase

#: Rows per ``executemany`` and per transaction while loading.
CHUNK = 20_000

#: ``progress(step, done, total)`` while loading (a CLI bar, a Task's status).
Progress = Callable[[str, int, int], None]


def _no_progress(step: str, done: int, total: int) -> None:
    return None


@dataclass(frozen=True)
class Version:
    """One loaded code system version (a ``terminology_version`` row)."""

    key: int
    url: str
    version: str
    name: str | None
    title: str | None
    content: str
    case_sensitive: bool
    hierarchy: str | None
    source: str
    resource_id: str | None
    supplements: str | None
    concept_count: int
    latest: bool
    loaded_at: str | None

    @classmethod
    def of(cls, row: Any) -> Version:
        m = row._mapping
        return cls(**{f: m[f] for f in cls.__dataclass_fields__})


def _chunks(rows: Iterable[tuple[Any, ...]], size: int = CHUNK) -> Iterator[list[tuple[Any, ...]]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def write_code_system(
    db: PluginDatabase, data: CodeSystemData, progress: Progress = _no_progress
) -> Version:
    """Store ``data`` as a new active version (replacing the same url and version) and make it
    the latest of its url, in chunks (a large load). Raises ``FhirError`` 400 for a hierarchy
    with a cycle or an unknown parent, before anything is written."""
    pairs = list(closure(data.concepts))
    with db.begin() as conn:
        key = _insert_version(conn, data, len(pairs))
    try:
        for step, table, columns, rows, estimate in _row_sets(key, data, pairs):
            done = 0
            progress(step, 0, estimate)
            for chunk in _chunks(rows):
                with db.begin() as conn:
                    _insert_rows(conn, table, columns, chunk)
                done += len(chunk)
                progress(step, done, max(estimate, done))
        with db.begin() as conn:
            row = _activate(conn, key, data)
    except BaseException:
        with db.begin() as conn:
            _delete_version(conn, key)
        raise
    return Version.of(row)


def write_code_systems(conn: Connection, systems: Iterable[CodeSystemData]) -> list[Version]:
    """Store several small code systems inside the caller's transaction (the R4 code systems
    at start, a POSTed CodeSystem): one commit instead of one per step."""
    out: list[Version] = []
    for data in systems:
        pairs = list(closure(data.concepts, MAX_POSTED_PAIRS))
        key = _insert_version(conn, data, len(pairs))
        for _step, table, columns, rows, _estimate in _row_sets(key, data, pairs):
            for chunk in _chunks(rows):
                _insert_rows(conn, table, columns, chunk)
        out.append(Version.of(_activate(conn, key, data)))
    return out


def _insert_version(conn: Connection, data: CodeSystemData, pairs: int) -> int:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    result = conn.execute(
        insert(version_table).values(
            url=data.url,
            # A placeholder unique to this load until it replaces the old version.
            version=f"loading:{uuid.uuid4().hex}",
            tenant=data.tenant,
            name=data.name,
            title=data.title,
            content=data.content,
            case_sensitive=data.case_sensitive,
            hierarchy=data.hierarchy,
            source=data.source,
            resource_id=data.resource_id,
            supplements=data.supplements,
            concept_count=len(data.concepts),
            status="loading",
            latest=False,
            loaded_at=now,
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _activate(conn: Connection, key: int, data: CodeSystemData) -> Any:
    old = conn.execute(
        select(version_table.c.key).where(
            version_table.c.url == data.url,
            version_table.c.version == data.version,
            version_table.c.tenant == data.tenant,
        )
    ).scalar()
    if old is not None:
        _delete_version(conn, old)
    conn.execute(
        update(version_table)
        .where(version_table.c.url == data.url, version_table.c.tenant == data.tenant)
        .values(latest=False)
    )
    conn.execute(
        update(version_table)
        .where(version_table.c.key == key)
        .values(version=data.version, status="active", latest=True)
    )
    return conn.execute(select(version_table).where(version_table.c.key == key)).one()


#: One table's rows while loading: (step, table, column names, row tuples, estimated count).
RowSet = tuple[str, Any, tuple[str, ...], Iterator[tuple[Any, ...]], int]


def _row_sets(key: int, data: CodeSystemData, pairs: Sequence[tuple[str, str]]) -> list[RowSet]:
    """The rows of each table a version fills, as tuples (a 1.6 million row load spends its
    time here: no dict per row)."""
    concepts = data.concepts

    def concept_rows() -> Iterator[tuple[Any, ...]]:
        for seq, c in enumerate(concepts):
            designations = (
                json.dumps(
                    [{k: v for k, v in vars(d).items() if v is not None} for d in c.designations]
                )
                if c.designations
                else None
            )
            yield (key, c.code, c.display, c.definition, c.inactive, c.abstract, designations, seq)

    def parent_rows() -> Iterator[tuple[Any, ...]]:
        for c in concepts:
            for parent in dict.fromkeys(c.parents):
                yield (key, c.code, parent)

    def closure_rows() -> Iterator[tuple[Any, ...]]:
        for ancestor, code in pairs:
            yield (key, ancestor, code)

    def word_rows() -> Iterator[tuple[Any, ...]]:
        for c in concepts:
            texts = [c.display or ""] + [d.value for d in c.designations]
            for word in dict.fromkeys(w for text in texts for w in index_words(text)):
                yield (key, word, c.code)

    def property_rows() -> Iterator[tuple[Any, ...]]:
        for c in concepts:
            for name, value in dict.fromkeys(c.properties):
                yield (key, c.code, name, value)

    concept_columns = (
        "version_key",
        "code",
        "display",
        "definition",
        "inactive",
        "abstract",
        "designations",
        "seq",
    )
    return [
        ("concepts", concept_table, concept_columns, concept_rows(), len(concepts)),
        (
            "hierarchy",
            parent_table,
            ("version_key", "code", "parent"),
            parent_rows(),
            len(concepts),
        ),
        ("closure", closure_table, ("version_key", "ancestor", "code"), closure_rows(), len(pairs)),
        ("words", word_table, ("version_key", "word", "code"), word_rows(), len(concepts) * 7),
        (
            "properties",
            property_table,
            ("version_key", "code", "property", "value"),
            property_rows(),
            len(concepts),
        ),
    ]


def _insert_rows(
    conn: Connection, table: Any, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    """``executemany`` with the driver's own placeholders: SQLAlchemy's per-row processing
    would cost more than the database's work for these plain rows."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    statement = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join([mark] * len(columns))})"
    )
    conn.exec_driver_sql(statement, rows)


def _delete_version(conn: Connection, key: int) -> None:
    for table in CONCEPT_TABLES:
        conn.execute(delete(table).where(table.c.version_key == key))
    conn.execute(delete(version_table).where(version_table.c.key == key))


def delete_versions_of_resource(db: PluginDatabase, resource_id: str) -> None:
    """Forget the versions projected from one CodeSystem resource (deleted or replaced)."""
    with db.begin() as conn:
        keys = conn.execute(
            select(version_table.c.key).where(version_table.c.resource_id == resource_id)
        ).scalars()
        for key in list(keys):
            _delete_version(conn, key)


# -- reading ----------------------------------------------------------------------------------


def find_version(
    conn: Connection, url: str, version: str | None = None, tenant: str | None = None
) -> Version | None:
    """The active version of ``url`` (the latest when ``version`` is None) for a caller of
    ``tenant`` (its own code system of that url first, then the shared one; None: shared
    only): plain SQL, since every terminology request starts here."""
    row = version_row(conn, url, version, tenant)
    if row is None:
        return None
    found = Version.of(row)
    # sqlite3 answers 0/1 for the booleans of a plain statement.
    return replace(found, case_sensitive=bool(found.case_sensitive), latest=bool(found.latest))


def versions_of(conn: Connection, url: str, tenant: str | None = None) -> list[str]:
    """Every active version of ``url`` a caller of ``tenant`` sees (for the message naming
    what is loaded)."""
    return list(
        conn.execute(
            select(version_table.c.version).where(
                version_table.c.url == url,
                version_table.c.status == "active",
                version_table.c.tenant.in_({tenant or SHARED, SHARED}),
            )
        ).scalars()
    )


def list_versions(conn: Connection) -> list[Version]:
    rows = conn.execute(
        select(version_table)
        .where(version_table.c.status == "active")
        .order_by(version_table.c.url, version_table.c.version)
    )
    return [Version.of(row) for row in rows]


def is_ancestor(conn: Connection, key: int, ancestor: str, code: str) -> bool:
    return bool(
        conn.execute(
            select(
                exists().where(
                    closure_table.c.version_key == key,
                    closure_table.c.ancestor == ancestor,
                    closure_table.c.code == code,
                )
            )
        ).scalar()
    )


def descendants(conn: Connection, key: int, code: str, limit: int) -> list[str]:
    """Codes below ``code`` (not itself), at most ``limit``."""
    rows = conn.execute(
        select(closure_table.c.code)
        .where(closure_table.c.version_key == key, closure_table.c.ancestor == code)
        .limit(limit)
    )
    return list(rows.scalars())


def ancestors(conn: Connection, key: int, code: str) -> list[str]:
    rows = conn.execute(
        select(closure_table.c.ancestor).where(
            closure_table.c.version_key == key, closure_table.c.code == code
        )
    )
    return list(rows.scalars())
