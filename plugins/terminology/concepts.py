"""The hot reads of the concept tables: the version a request means and one concept's details.

``$lookup``, ``$validate-code`` and ``$subsumes`` run these on every request, so they are
plain SQL through the driver (a statement string built once; no SQLAlchemy expression to build,
hash and compile per call), and a concept's details are kept in a bounded LRU per loaded
version: an active version never changes (a reload writes a new version row), so a cached
concept is never stale while its version row is the one the request resolved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from fhirhub.plugins.terminology.lru import LRU
from fhirhub.plugins.terminology.tables import SHARED

#: Concepts kept per process (all versions together); a few hundred bytes each.
CACHE_SIZE = 20_000

_VERSION_COLUMNS = (
    '"key", url, version, name, title, content, case_sensitive, hierarchy, source, '
    "resource_id, supplements, concept_count, latest, loaded_at"
)
# The tenant's own version of a url first, then the shared one (``SHARED`` is '', the least).
_LATEST = (
    f"SELECT {_VERSION_COLUMNS} FROM terminology_version "
    "WHERE url = ? AND status = 'active' AND tenant IN (?, ?) AND latest = ? "
    "ORDER BY tenant DESC LIMIT 1"
)
_BY_VERSION = (
    f"SELECT {_VERSION_COLUMNS} FROM terminology_version "
    "WHERE url = ? AND status = 'active' AND tenant IN (?, ?) AND version = ? "
    "ORDER BY tenant DESC LIMIT 1"
)
_CONCEPT = (
    "SELECT display, definition, inactive, abstract, designations FROM terminology_concept "
    "WHERE version_key = ? AND code = ?"
)
_PARENTS = (
    "SELECT parent FROM terminology_parent WHERE version_key = ? AND code = ? ORDER BY parent"
)
# Sorted here by ``seq``: ordering in SQL lets SQLite walk every concept in ``seq`` order.
_CHILDREN = (
    "SELECT p.code, c.seq FROM terminology_parent p JOIN terminology_concept c "
    "ON c.version_key = p.version_key AND c.code = p.code "
    "WHERE p.version_key = ? AND p.parent = ?"
)
_PROPERTIES = (
    "SELECT property, value FROM terminology_property WHERE version_key = ? AND code = ? "
    "ORDER BY property, value"
)


def _sql(conn: Connection, statement: str) -> str:
    """``statement`` in the driver's placeholder style (``?`` for sqlite3, ``%s`` else)."""
    return statement if conn.dialect.paramstyle == "qmark" else statement.replace("?", "%s")


def version_row(
    conn: Connection, url: str, version: str | None, tenant: str | None = None
) -> Any | None:
    """The active version row of ``url`` (the latest when ``version`` is None) that a caller
    of ``tenant`` means: the tenant's own code system of that url when it has one, else the
    shared one (``tenant`` None: the shared one only), as a driver row in
    ``_VERSION_COLUMNS`` order."""
    own = tenant or SHARED
    if version is None:
        params: tuple[Any, ...] = (url, own, SHARED, True)
        statement = _LATEST
    else:
        params = (url, own, SHARED, version)
        statement = _BY_VERSION
    return conn.exec_driver_sql(_sql(conn, statement), params).first()


@dataclass(frozen=True, slots=True)
class Concept:
    """What ``$lookup`` answers about one concept of one version."""

    code: str
    display: str | None
    definition: str | None
    inactive: bool
    abstract: bool
    #: JSON list of designations, as stored.
    designations: str | None
    parents: tuple[str, ...]
    children: tuple[str, ...]
    properties: tuple[tuple[str, str], ...]


class ConceptCache:
    """A bounded LRU of :class:`Concept` by (version key, version, loaded_at, code): the
    version's identity as well as its key, so that a key reused after a deletion never
    answers with the old version's concept."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._items: LRU[Concept] = LRU(size)

    def get(
        self, conn: Connection, key: int, version: str, loaded_at: str | None, code: str
    ) -> Concept | None:
        """The concept ``code`` of the version with ``key``; None when it has no such code."""
        cache_key = (key, version, loaded_at, code)
        found = self._items.get(cache_key)
        if found is None:
            found = read_concept(conn, key, code)
            if found is not None:
                self._items.put(cache_key, found)
        return found

    def clear(self) -> None:
        self._items.clear()


def read_concept(conn: Connection, key: int, code: str) -> Concept | None:
    row = conn.exec_driver_sql(_sql(conn, _CONCEPT), (key, code)).first()
    if row is None:
        return None
    parents = conn.exec_driver_sql(_sql(conn, _PARENTS), (key, code)).scalars().all()
    children = conn.exec_driver_sql(_sql(conn, _CHILDREN), (key, code)).all()
    properties = conn.exec_driver_sql(_sql(conn, _PROPERTIES), (key, code)).all()
    return Concept(
        code=code,
        display=row[0],
        definition=row[1],
        inactive=bool(row[2]),
        abstract=bool(row[3]),
        designations=row[4],
        parents=tuple(parents),
        children=tuple(child for child, _seq in sorted(children, key=lambda r: r[1])),
        properties=tuple((name, value) for name, value in properties),
    )
