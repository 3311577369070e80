"""The indexer: keeps the search index tables in step with the resources that are written.

Search indexes are a projection of the version log (see ``fhir_store.schema``): each write
replaces all index rows of the resource in the same database transaction as the version row, and
``reindex`` rebuilds them from ``resource_current`` (after a SearchParameter is added at run time,
and by ``fhirhub replay``).

Writes are on the hot path, so ``replace_many`` batches a whole unit of work (one resource, or a
transaction Bundle's worth): one ``DELETE`` executemany and one ``INSERT`` executemany per index
table, whatever the number of resources.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import Connection, Executable, and_, bindparam, delete, select, tuple_
from sqlalchemy.engine import Dialect

from fhirhub.fhir_store.schema import resource_current
from fhirhub.fhir_store.search.extract import Extractor
from fhirhub.fhir_store.search.index_tables import INDEX_TABLES
from fhirhub.fhir_store.search.parameters import SearchParameterRegistry

#: Resources read per round trip while re-indexing.
REINDEX_CHUNK = 500


class Indexer:
    """Writes index rows for resources through one ``Extractor``."""

    def __init__(self, registry: SearchParameterRegistry, extractor: Extractor | None = None):
        self.registry = registry
        self.extractor = extractor if extractor is not None else Extractor(registry)
        self._delete = {
            kind: delete(table).where(
                and_(
                    table.c.resource_type == bindparam("b_type"),
                    table.c.resource_id == bindparam("b_id"),
                )
            )
            for kind, table in INDEX_TABLES.items()
        }
        self._delete_param = {
            kind: delete(table).where(
                and_(
                    table.c.resource_type == bindparam("b_type"),
                    table.c.resource_id == bindparam("b_id"),
                    table.c.param == bindparam("b_param"),
                )
            )
            for kind, table in INDEX_TABLES.items()
        }
        self._insert: dict[str, Executable] = {
            kind: table.insert() for kind, table in INDEX_TABLES.items()
        }
        self._compiled: dict[tuple[int, int], tuple[str, Callable[[dict[str, Any]], Any]]] = {}

    def replace_many(
        self,
        conn: Connection,
        items: Sequence[tuple[str, str, dict[str, Any] | None]],
        *,
        params: Iterable[str] | None = None,
        delete_existing: bool = True,
    ) -> None:
        """Replace the index rows of each ``(resource_type, resource_id, resource)``.

        ``resource`` None (a deletion) only removes the rows. ``params`` limits the work to those
        parameter codes (rows of other parameters are left alone). ``delete_existing=False``
        skips the deletes, for callers that know there are no rows (a replay into emptied
        tables). Runs on ``conn`` inside the caller's transaction.
        """
        if not items:
            return
        wanted = None if params is None else list(params)
        rows: dict[str, list[dict[str, Any]]] = {}
        owners: list[dict[str, Any]] = []
        for resource_type, resource_id, resource in items:
            if wanted is None:
                owners.append({"b_type": resource_type, "b_id": resource_id})
            else:
                owners.extend(
                    {"b_type": resource_type, "b_id": resource_id, "b_param": code}
                    for code in wanted
                )
            if resource is None:
                continue
            if resource.get("id") != resource_id or resource.get("resourceType") != resource_type:
                resource = {**resource, "resourceType": resource_type, "id": resource_id}
            for kind, kind_rows in self.extractor.extract(resource, wanted).items():
                rows.setdefault(kind, []).extend(kind_rows)
        if delete_existing:
            statements = self._delete if wanted is None else self._delete_param
            for kind in INDEX_TABLES:
                self._executemany(conn, statements[kind], owners)
        for kind, kind_rows in rows.items():
            if kind_rows:
                self._executemany(conn, self._insert[kind], kind_rows)

    def _executemany(
        self, conn: Connection, statement: Executable, rows: list[dict[str, Any]]
    ) -> None:
        """``conn.execute(statement, rows)``; on SQLite through the driver with positional
        parameters of the statement compiled once (SQLAlchemy's per-row parameter processing
        costs more than SQLite's insert itself; these columns need no type conversion)."""
        dialect = conn.dialect
        if dialect.name != "sqlite":
            conn.execute(statement, rows)
            return
        key = (id(statement), id(dialect))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = _positional(statement, dialect)
            self._compiled[key] = compiled
        sql, to_tuple = compiled
        conn.exec_driver_sql(sql, [to_tuple(row) for row in rows])

    def reindex(
        self,
        conn: Connection,
        resource_types: Iterable[str] | None = None,
        params: Iterable[str] | None = None,
        *,
        chunk: int = REINDEX_CHUNK,
        delete_existing: bool = True,
    ) -> int:
        """Rebuild the index rows of the current (not deleted) resources; returns how many.

        ``resource_types`` limits it to those types, ``params`` to those parameter codes. Reads
        ``resource_current`` in keyset-paged chunks, so memory stays bounded by ``chunk``.
        ``delete_existing=False`` when the index tables were just emptied (``fhirhub replay``).
        """
        types = None if resource_types is None else sorted(set(resource_types))
        codes = None if params is None else sorted(set(params))
        key = tuple_(resource_current.c.resource_type, resource_current.c.resource_id)
        last: tuple[str, str] | None = None
        done = 0
        while True:
            query = (
                select(
                    resource_current.c.resource_type,
                    resource_current.c.resource_id,
                    resource_current.c.content,
                )
                .where(resource_current.c.deleted.is_(False))
                .order_by(resource_current.c.resource_type, resource_current.c.resource_id)
                .limit(chunk)
            )
            if types is not None:
                query = query.where(resource_current.c.resource_type.in_(types))
            if last is not None:
                query = query.where(key > tuple_(*last))
            batch = conn.execute(query).all()
            if not batch:
                return done
            items = [
                (row.resource_type, row.resource_id, orjson.loads(row.content))
                for row in batch
                if row.content is not None
            ]
            self.replace_many(conn, items, params=codes, delete_existing=delete_existing)
            done += len(items)
            last = (batch[-1].resource_type, batch[-1].resource_id)


def _positional(
    statement: Executable, dialect: Dialect
) -> tuple[str, Callable[[dict[str, Any]], tuple[Any, ...]]]:
    compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    names = list(compiled.positiontup or ())
    if not names:
        raise ValueError("the statement has no positional parameters")
    getter = itemgetter(*names)
    if len(names) == 1:
        return compiled.string, lambda row: (getter(row),)
    return compiled.string, getter
