"""Fixtures for the search query tests, on SQLite and PostgreSQL.

Import them into a test module (``from tests.fhir_store.search.query_fixtures import *``):
``db`` is a fresh, empty store on each backend (``engine`` is parametrised over ``sqlite`` and
``postgresql``), with ``db.put(resource)`` writing a resource as the store would
(``resource_current`` row with ``meta.versionId``/``meta.lastUpdated`` plus its index rows) and
``db.search(...)``/``db.ids(...)`` running ``fhir_store.search.query.search``.

PostgreSQL: one schema per test session (``CREATE SCHEMA``, dropped at the end), its tables
truncated between tests. SQLite: a temporary file per test, ``metadata.create_all``.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest
from sqlalchemy import Connection, Engine, bindparam, create_engine, text

from fhirhub.fhir_store.chain import GENESIS, chain_link, entry_digest
from fhirhub.fhir_store.database import make_engine
from fhirhub.fhir_store.schema import metadata, resource_current, resource_version
from fhirhub.fhir_store.search.index import Indexer
from fhirhub.fhir_store.search.parameters import SearchParameterRegistry, default_registry
from fhirhub.fhir_store.search.query import everything, search

PG_SERVER = os.environ.get("FHIRHUB_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
PG_URL = f"{PG_SERVER}/test"
BASE = "http://hub.test/fhir"
_SEQ = itertools.count(1)

__all__ = ["BASE", "Db", "db", "engine", "put", "query_pg_engine", "registry", "indexer"]


@pytest.fixture(scope="session")
def registry() -> SearchParameterRegistry:
    return default_registry()


@pytest.fixture(scope="session")
def indexer(registry: SearchParameterRegistry) -> Indexer:
    return Indexer(registry)


@pytest.fixture(scope="session")
def query_pg_engine() -> Iterator[Engine]:
    from tests.backends import ensure_postgres

    ensure_postgres()
    schema = f"q_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"})
    metadata.create_all(engine)
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        sqlite_engine = make_engine(f"sqlite:///{tmp_path / 'query.db'}")
        metadata.create_all(sqlite_engine)
        yield sqlite_engine
        sqlite_engine.dispose()
        return
    pg: Engine = request.getfixturevalue("query_pg_engine")
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with pg.begin() as conn:
        conn.execute(text(f"TRUNCATE {names}"))
    yield pg


def _instant(micros: int) -> str:
    moment = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC) + _dt.timedelta(microseconds=micros)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def put(
    conn: Connection,
    resource: dict[str, Any],
    indexer: Indexer,
    *,
    last_updated: int | None = None,
) -> dict[str, Any]:
    """Store ``resource`` as the current version (replacing an earlier one) and index it."""
    put_many(conn, [resource], indexer, last_updated=last_updated)
    return resource


def put_many(
    conn: Connection,
    resources: list[dict[str, Any]],
    indexer: Indexer,
    *,
    last_updated: int | None = None,
) -> None:
    rows = []
    items: list[tuple[str, str, dict[str, Any] | None]] = []
    for resource in resources:
        resource.setdefault("id", uuid.uuid4().hex[:16])
        meta = resource.get("meta") or {}
        updated = last_updated
        if updated is None:
            if "lastUpdated" in meta:
                from fhirhub.fhir_store.search.normalize import date_range

                period = date_range(meta["lastUpdated"])
                assert period is not None
                updated = period[0]
            else:
                updated = int(_dt.datetime.now(_dt.UTC).timestamp() * 1_000_000)
        resource["meta"] = {**meta, "versionId": "1", "lastUpdated": _instant(updated)}
        rows.append(
            {
                "resource_type": resource["resourceType"],
                "resource_id": resource["id"],
                "version_id": 1,
                "last_updated": updated,
                "deleted": False,
                "seq": next(_SEQ),
                "content": orjson.dumps(resource),
            }
        )
        items.append((resource["resourceType"], resource["id"], resource))
    conn.execute(
        resource_current.delete().where(
            resource_current.c.resource_type == bindparam("k_type"),
            resource_current.c.resource_id == bindparam("k_id"),
        ),
        [{"k_type": r["resource_type"], "k_id": r["resource_id"]} for r in rows],
    )
    conn.execute(resource_current.insert(), rows)
    _log(conn, rows)
    indexer.replace_many(conn, items)


def _log(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """The log rows the current rows name, with the digests reads check them against
    (``fhir_store.projections``); a resource put again replaces its earlier log rows."""
    conn.execute(
        resource_version.delete().where(
            resource_version.c.resource_type == bindparam("k_type"),
            resource_version.c.resource_id == bindparam("k_id"),
        ),
        [{"k_type": r["resource_type"], "k_id": r["resource_id"]} for r in rows],
    )
    log_rows = []
    for row in rows:
        digest = entry_digest(
            row["resource_type"],
            row["resource_id"],
            row["version_id"],
            row["last_updated"],
            "PUT",
            row["deleted"],
            None,
            row["content"],
        )
        log_rows.append(
            {
                key: row[key]
                for key in ("resource_type", "resource_id", "version_id", "last_updated", "seq")
            }
            | {
                "deleted": row["deleted"],
                "content": row["content"],
                "method": "PUT",
                "tenant": None,
                "hash": digest + chain_link(GENESIS, digest),
            }
        )
    conn.execute(resource_version.insert(), log_rows)


def delete(conn: Connection, resource_type: str, resource_id: str, indexer: Indexer) -> None:
    conn.execute(
        resource_current.update()
        .where(
            resource_current.c.resource_type == resource_type,
            resource_current.c.resource_id == resource_id,
        )
        .values(deleted=True, content=None, version_id=resource_current.c.version_id + 1)
    )
    indexer.replace_many(conn, [(resource_type, resource_id, None)])


class Db:
    """A store on one backend, for tests: write resources, run searches."""

    def __init__(self, engine: Engine, registry: SearchParameterRegistry, indexer: Indexer):
        self.engine = engine
        self.registry = registry
        self.indexer = indexer

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def put(self, *resources: dict[str, Any], last_updated: int | None = None) -> None:
        with self.engine.begin() as conn:
            put_many(conn, list(resources), self.indexer, last_updated=last_updated)

    def delete(self, resource_type: str, resource_id: str) -> None:
        with self.engine.begin() as conn:
            delete(conn, resource_type, resource_id, self.indexer)

    def raw(
        self,
        resource_type: str | None,
        query: str | list[tuple[str, str]] = "",
        **kwargs: Any,
    ) -> bytes:
        params = parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else query
        with self.engine.connect() as conn:
            return search(conn, self.registry, resource_type, params, base_url=BASE, **kwargs)

    def search(
        self,
        resource_type: str | None,
        query: str | list[tuple[str, str]] = "",
        **kwargs: Any,
    ) -> dict[str, Any]:
        result: dict[str, Any] = orjson.loads(self.raw(resource_type, query, **kwargs))
        return result

    def ids(
        self,
        resource_type: str | None,
        query: str | list[tuple[str, str]] = "",
        *,
        mode: str = "match",
        **kwargs: Any,
    ) -> list[str]:
        """``Type/id`` of the entries with ``search.mode == mode``, sorted."""
        return sorted(entry_ids(self.search(resource_type, query, **kwargs), mode))

    def everything(self, patient_id: str, query: str = "") -> dict[str, Any]:
        with self.engine.connect() as conn:
            raw = everything(
                conn,
                self.registry,
                patient_id,
                base_url=BASE,
                params=parse_qsl(query, keep_blank_values=True),
            )
        result: dict[str, Any] = orjson.loads(raw)
        return result


def entry_ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == mode
    ]


@pytest.fixture
def db(engine: Engine, registry: SearchParameterRegistry, indexer: Indexer) -> Db:
    return Db(engine, registry, indexer)


# --------------------------------------------------------------------------------------------
# Synthea data (../shared/data/synthea), for the realistic-volume tests and tools/bench_search.py

SYNTHEA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "synthea"


def synthea_files(limit: int | None = None) -> list[Path]:
    files = sorted(SYNTHEA.glob("*.json")) if SYNTHEA.is_dir() else []
    return files[:limit] if limit is not None else files


def synthea_resources(path: Path) -> list[dict[str, Any]]:
    """The resources of one Synthea transaction Bundle, with ``urn:uuid`` references rewritten
    to ``Type/id`` as the store's transaction processing would."""
    bundle = orjson.loads(path.read_bytes())
    mapping = {
        entry["fullUrl"]: f"{entry['resource']['resourceType']}/{entry['resource']['id']}"
        for entry in bundle.get("entry", [])
        if "fullUrl" in entry and "id" in entry["resource"]
    }

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            ref = value.get("reference")
            if isinstance(ref, str) and ref in mapping:
                value["reference"] = mapping[ref]
            for item in value.values():
                if isinstance(item, dict | list):
                    rewrite(item)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict | list):
                    rewrite(item)
        return value

    return [rewrite(entry["resource"]) for entry in bundle.get("entry", [])]


def load_synthea(engine: Engine, indexer: Indexer, files: list[Path]) -> int:
    """Store and index every resource of ``files`` (one transaction per file); returns how many
    resources were written."""
    written = 0
    for path in files:
        resources = synthea_resources(path)
        unique = list({(r["resourceType"], r["id"]): r for r in resources}.values())
        with engine.begin() as conn:
            put_many(conn, unique, indexer, last_updated=None)
        written += len(unique)
    return written
