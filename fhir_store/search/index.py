"""The indexer: keeps the search index tables in step with the resources that are written.

Search indexes are a projection of the version log (see ``fhir_store.schema``): each write
replaces all index rows of the resource in the same database transaction as the version row, and
``reindex`` rebuilds them from ``resource_current`` (after a SearchParameter is added at run time,
and by ``fhirhub replay``).

Writes are on the hot path, so ``replace_many`` batches a whole unit of work (one resource, or a
transaction Bundle's worth), whatever the number of resources:

* SQLite (in-process, no round trips): one ``DELETE`` and one ``INSERT`` executemany per index
  table through the driver, with positional parameters of statements compiled once
  (SQLAlchemy's per-row parameter processing costs more than SQLite's insert itself). Deletes
  skip the tables the resource type has no parameters for. On the write path an updated
  resource's stored rows are read and diffed with the new ones: only the rows that changed are
  deleted and inserted (each index page an unchanged row sits on would otherwise be rewritten
  into the WAL).
* PostgreSQL (every statement is a round trip, ~0.1-0.2 ms here): ONE statement per call, made
  of data-modifying CTEs, ``WITH d_string AS (DELETE ... WHERE (type, id) IN (SELECT
  unnest(:types), unnest(:ids))), i_string AS (INSERT ... SELECT unnest(:col1), unnest(:col2),
  ...), ... SELECT 1``, with one array parameter per column. All parts run on the same snapshot,
  so the deletes never see the rows inserted by the same statement. The statement text is fixed,
  so it is compiled and prepared once.
* Other databases, and re-indexing of selected parameters: Core executemany.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Container, Iterable, Sequence
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    Executable,
    String,
    and_,
    bindparam,
    delete,
    func,
    literal,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql

from fhirhub.fhir_store.driver import fetch_all, positional, run_many
from fhirhub.fhir_store.encryption import opened
from fhirhub.fhir_store.schema import resource_current
from fhirhub.fhir_store.search.extract import Extractor
from fhirhub.fhir_store.search.index_tables import INDEX_TABLES
from fhirhub.fhir_store.search.parameters import SearchParameterRegistry

#: Resources read per round trip while re-indexing.
REINDEX_CHUNK = 500
#: Resources whose index rows are built and written together: a 10,000-entry transaction's
#: rows (a dict each, a few hundred thousand of them) were the peak of its memory use.
INDEX_CHUNK = 500

Rows = dict[str, list[dict[str, Any]]]


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
        #: PostgreSQL statements by (tables to delete from, tables to insert into): a handful
        #: of shapes per resource type, each compiled and prepared once.
        self._pg_statements: dict[tuple[frozenset[str], frozenset[str]], Executable] = {}
        #: Per resource type, the tables its parameters have ever written to in this process.
        self._kinds: dict[str, set[str]] = {}
        self._kinds_generation = -1

    def replace_many(
        self,
        conn: Connection,
        items: Sequence[tuple[str, str, dict[str, Any] | None]],
        *,
        params: Iterable[str] | None = None,
        delete_existing: bool = True,
        new: Container[tuple[str, str]] = (),
        references: dict[tuple[str, str], list[dict[str, Any]]] | None = None,
        keep_unchanged: bool = False,
    ) -> None:
        """Replace the index rows of each ``(resource_type, resource_id, resource)``.

        ``resource`` None (a deletion) only removes the rows. ``params`` limits the work to those
        parameter codes (rows of other parameters are left alone). ``delete_existing=False``
        skips the deletes, for callers that know there are no rows (a replay into emptied
        tables); ``new`` names the ``(type, id)`` pairs that cannot have rows yet (their first
        version), whose deletes are skipped too: most writes of an ingest are creates, and
        their deletes were a fifth of the flush. ``references``, when given, receives each
        indexed resource's ``reference`` rows (the write path derives compartment membership
        from them). ``keep_unchanged`` (the write path) leaves an updated resource's rows that
        keep their values in place on SQLite (:meth:`_diff_rows`); a re-index rewrites all.
        Runs on ``conn`` inside the caller's transaction, :data:`INDEX_CHUNK` resources at a
        time.
        """
        if not items:
            return
        for start in range(0, len(items), INDEX_CHUNK):
            self._replace_chunk(
                conn,
                items[start : start + INDEX_CHUNK],
                params,
                delete_existing,
                new,
                references,
                keep_unchanged,
            )

    def _replace_chunk(
        self,
        conn: Connection,
        items: Sequence[tuple[str, str, dict[str, Any] | None]],
        params: Iterable[str] | None,
        delete_existing: bool,
        new: Container[tuple[str, str]],
        references: dict[tuple[str, str], list[dict[str, Any]]] | None = None,
        keep_unchanged: bool = False,
    ) -> None:
        to_clear = [item for item in items if (item[0], item[1]) not in new] if new else items
        wanted = None if params is None else list(params)
        dialect = conn.dialect.name
        # On SQLite an updated resource's rows are diffed against the stored ones (below).
        diff = keep_unchanged and dialect == "sqlite" and wanted is None and delete_existing
        updated: list[tuple[str, str, dict[str, list[dict[str, Any]]]]] = []
        rows: Rows = {}
        for resource_type, resource_id, resource in items:
            if resource is None:
                continue
            if resource.get("id") != resource_id or resource.get("resourceType") != resource_type:
                resource = {**resource, "resourceType": resource_type, "id": resource_id}
            extracted = self.extractor.extract(resource, wanted)
            if references is not None:
                references[(resource_type, resource_id)] = extracted.get("reference", [])
            if diff and (resource_type, resource_id) not in new:
                updated.append((resource_type, resource_id, extracted))
                continue
            for kind, kind_rows in extracted.items():
                rows.setdefault(kind, []).extend(kind_rows)
        if dialect == "postgresql" and wanted is None:
            self._replace_postgresql(conn, to_clear, rows, delete_existing)
            return
        if diff:
            if updated:
                self._diff_rows(conn, updated, rows)
            # Deletions (no resource) lose all their rows.
            to_clear = [item for item in to_clear if item[2] is None]
        if delete_existing and to_clear:
            self._delete_rows(conn, to_clear, wanted)
        for kind, kind_rows in rows.items():
            if kind_rows:
                executemany(conn, self._insert[kind], kind_rows)

    def _replace_postgresql(
        self,
        conn: Connection,
        items: Sequence[tuple[str, str, dict[str, Any] | None]],
        rows: Rows,
        delete_existing: bool,
    ) -> None:
        parameters: dict[str, list[Any]] = {}
        deletes: frozenset[str] = frozenset()
        if delete_existing and items:
            parameters["o_types"] = [resource_type for resource_type, _, _ in items]
            parameters["o_ids"] = [resource_id for _, resource_id, _ in items]
            kinds: set[str] = set()
            for resource_type in {resource_type for resource_type, _, _ in items}:
                kinds |= self.tables_of(resource_type)
            deletes = frozenset(kinds)
        inserts = frozenset(kind for kind, kind_rows in rows.items() if kind_rows)
        if not deletes and not inserts:
            return
        for kind in inserts:
            kind_rows = rows[kind]
            for column in INDEX_TABLES[kind].columns:
                name = column.name
                parameters[f"{kind}__{name}"] = [row[name] for row in kind_rows]
        statement = self._pg_statements.get((deletes, inserts))
        if statement is None:
            statement = _pg_replace_statement(deletes, inserts)
            self._pg_statements[(deletes, inserts)] = statement
        conn.execute(statement, parameters)

    def tables_of(self, resource_type: str) -> set[str]:
        """The index tables rows of ``resource_type`` can be in: those of its parameters now
        and of every parameter it had earlier in this process (a removed SearchParameter's rows
        are still deleted when its resources change)."""
        if self._kinds_generation != self.registry.generation:
            self._kinds_generation = self.registry.generation
            for known_type, known in self._kinds.items():
                known.update(self._current_kinds(known_type))
        kinds = self._kinds.get(resource_type)
        if kinds is None:
            kinds = self._kinds[resource_type] = self._current_kinds(resource_type)
        return kinds

    def _current_kinds(self, resource_type: str) -> set[str]:
        return {plan.table for plan in self.extractor.plans(resource_type)}

    def _diff_rows(
        self,
        conn: Connection,
        updated: Sequence[tuple[str, str, dict[str, list[dict[str, Any]]]]],
        rows: Rows,
    ) -> None:
        """Bring the stored rows of each updated ``(type, id, extracted rows)`` in line with
        its extracted ones, touching only the rows that differ: those stored but no longer
        extracted are deleted (by rowid), those extracted but not stored are added to ``rows``
        for insertion. An update usually changes few values (a visit's Condition gets a new
        encounter reference, its codes, dates and subject stay), and deleting and inserting the
        same rows again rewrote every lookup-index page they sit on: on SQLite each such page
        is a WAL frame at commit. The result is the same multiset of rows as a delete and a
        full insert: rows are compared by value, column by column."""
        deletes: dict[str, list[tuple[int]]] = {}
        for resource_type, resource_id, extracted in updated:
            kinds = self.tables_of(resource_type)
            for kind in INDEX_TABLES:
                wanted_rows = extracted.get(kind, [])
                if kind not in kinds:
                    # A table the type never had parameters for holds none of its rows.
                    if wanted_rows:
                        rows.setdefault(kind, []).extend(wanted_rows)
                    continue
                select_sql, values_of = _stored_rows_sql(kind)
                stored: dict[tuple[Any, ...], list[int]] = {}
                for rowid, *values in fetch_all(conn, select_sql, (resource_type, resource_id)):
                    stored.setdefault(tuple(values), []).append(rowid)
                for row in wanted_rows:
                    same = stored.get(values_of(row))
                    if same:
                        same.pop()
                    else:
                        rows.setdefault(kind, []).append(row)
                gone = [(rowid,) for rowids in stored.values() for rowid in rowids]
                if gone:
                    deletes.setdefault(kind, []).extend(gone)
        for kind, gone in deletes.items():
            run_many(conn, f"DELETE FROM {INDEX_TABLES[kind].name} WHERE rowid = ?", gone)

    def _delete_rows(
        self,
        conn: Connection,
        items: Sequence[tuple[str, str, dict[str, Any] | None]],
        wanted: list[str] | None,
    ) -> None:
        """Delete the existing rows of ``items``, only from the tables their types use."""
        if wanted is None:
            statements = self._delete
            owners = [{"b_type": t, "b_id": i} for t, i, _ in items]
        else:
            statements = self._delete_param
            owners = [{"b_type": t, "b_id": i, "b_param": c} for t, i, _ in items for c in wanted]
        kinds: set[str] = set()
        for resource_type in {resource_type for resource_type, _, _ in items}:
            kinds |= self.tables_of(resource_type)
        for kind in INDEX_TABLES:
            if kind in kinds and owners:
                executemany(conn, statements[kind], owners)

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
                (row.resource_type, row.resource_id, orjson.loads(opened(conn, row.content) or b""))
                for row in batch
                if row.content is not None
            ]
            self.replace_many(conn, items, params=codes, delete_existing=delete_existing)
            done += len(items)
            last = (batch[-1].resource_type, batch[-1].resource_id)


def executemany(conn: Connection, statement: Executable, rows: list[dict[str, Any]]) -> None:
    """``conn.execute(statement, rows)``; on SQLite through the driver with the statement
    compiled once to positional SQL (the index, version, current-state and outbox columns need
    no type conversion, and SQLAlchemy's per-call work was most of the cost of writing a small
    transaction). ``statement`` must be a long-lived object: compilations are kept by its id."""
    dialect = conn.dialect
    if dialect.name != "sqlite":
        conn.execute(statement, rows)
        return
    sql, to_tuple = positional(statement, dialect)
    run_many(conn, sql, [to_tuple(row) for row in rows])


@functools.cache
def _stored_rows_sql(kind: str) -> tuple[str, Callable[[dict[str, Any]], tuple[Any, ...]]]:
    """SQLite: the query of one resource's stored rows in ``kind``'s table (rowid first, then
    the value columns), and the function giving an extracted row's values in that order."""
    table = INDEX_TABLES[kind]
    columns = [column.name for column in table.columns if column.name not in _OWNER_COLUMNS]
    sql = (
        f"SELECT rowid, {', '.join(columns)} FROM {table.name}"
        " WHERE resource_type = ? AND resource_id = ?"
    )
    # Every table has the parameter column and a value column: the getter returns tuples.
    return sql, itemgetter(*columns)


_OWNER_COLUMNS = ("resource_type", "resource_id")


def _pg_replace_statement(deletes: frozenset[str], inserts: frozenset[str]) -> Executable:
    """The single PostgreSQL statement of ``replace_many`` (see the module docstring):
    deletes the owners' rows from the ``deletes`` tables and inserts into the ``inserts`` ones."""
    owner_types = bindparam("o_types", type_=postgresql.ARRAY(String))
    owner_ids = bindparam("o_ids", type_=postgresql.ARRAY(String))
    ctes = []
    for kind, table in INDEX_TABLES.items():
        if kind in deletes:
            owners = select(func.unnest(owner_types), func.unnest(owner_ids))
            ctes.append(
                delete(table)
                .where(tuple_(table.c.resource_type, table.c.resource_id).in_(owners))
                .cte(f"d_{kind}")
            )
        if kind in inserts:
            arrays = [
                func.unnest(bindparam(f"{kind}__{c.name}", type_=postgresql.ARRAY(c.type)))
                for c in table.columns
            ]
            names = [c.name for c in table.columns]
            ctes.append(table.insert().from_select(names, select(*arrays)).cte(f"i_{kind}"))
    return select(literal(1)).add_cte(*ctes)
