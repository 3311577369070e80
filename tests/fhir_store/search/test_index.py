"""The indexer on real databases (SQLite file and PostgreSQL): replace, delete, re-index."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, func, insert, select

from fhirhub.fhir_store.database import make_engine
from fhirhub.fhir_store.schema import resource_current
from fhirhub.fhir_store.search.index import Indexer
from fhirhub.fhir_store.search.index_tables import (
    INDEX_TABLES,
    index_composite,
    index_reference,
    index_string,
    index_token,
)
from fhirhub.fhir_store.search.parameters import default_registry


@pytest.fixture
def engine(database_url: str) -> Any:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def patient(pid: str, family: str, gender: str = "female") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "name": [{"family": family, "given": ["Ann"]}],
        "gender": gender,
        "birthDate": "1980-01-02",
    }


def observation(oid: str, subject: str, code: str, value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{subject}"},
        "effectiveDateTime": "2020-01-01",
        "valueQuantity": {"value": value, "system": "http://unitsofmeasure.org", "code": "kg"},
    }


def owned(engine: Engine, resource_type: str, resource_id: str) -> dict[str, int]:
    """Number of index rows per table that belong to one resource."""
    counts = {}
    with engine.connect() as conn:
        for kind, table in INDEX_TABLES.items():
            counts[kind] = conn.execute(
                select(func.count())
                .select_from(table)
                .where(table.c.resource_type == resource_type, table.c.resource_id == resource_id)
            ).scalar_one()
    return counts


def strings(engine: Engine, param: str) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(index_string.c.resource_id, index_string.c.value).where(
                index_string.c.param == param
            )
        )
        return {(r.resource_id, r.value) for r in rows}


def test_replace_many_inserts_replaces_and_deletes(engine: Engine) -> None:
    indexer = Indexer(default_registry())
    with engine.begin() as conn:
        indexer.replace_many(
            conn,
            [
                ("Patient", "p1", patient("p1", "Müller")),
                ("Patient", "p2", patient("p2", "Smith", "male")),
                ("Observation", "o1", observation("o1", "p1", "29463-7", 70)),
            ],
        )
    assert strings(engine, "family") == {("p1", "muller"), ("p2", "smith")}
    with engine.connect() as conn:
        refs = conn.execute(
            select(
                index_reference.c.param, index_reference.c.target_type, index_reference.c.target_id
            ).where(index_reference.c.resource_id == "o1")
        ).all()
        assert ("subject", "Patient", "p1") in refs and ("patient", "Patient", "p1") in refs
        composite = conn.execute(
            select(index_composite.c.key, index_composite.c.components).where(
                index_composite.c.param == "code-value-quantity"
            )
        ).one()
        assert composite.key == "29463-7"
        assert orjson.loads(composite.components)[1]["value"] == 70
    assert (
        owned(engine, "Observation", "o1")["quantity"] == 2
    )  # value-quantity, combo-value-quantity

    # An update replaces the rows: the old family name is gone, nothing is duplicated.
    with engine.begin() as conn:
        indexer.replace_many(conn, [("Patient", "p1", patient("p1", "Meyer"))])
    assert strings(engine, "family") == {("p1", "meyer"), ("p2", "smith")}
    assert owned(engine, "Patient", "p1") == owned(engine, "Patient", "p2")

    # A deletion removes every row of that resource only.
    with engine.begin() as conn:
        indexer.replace_many(conn, [("Patient", "p1", None), ("Observation", "o1", None)])
    assert sum(owned(engine, "Patient", "p1").values()) == 0
    assert sum(owned(engine, "Observation", "o1").values()) == 0
    assert strings(engine, "family") == {("p2", "smith")}
    with engine.begin() as conn:
        indexer.replace_many(conn, [])


def store_current(
    engine: Engine, resources: list[dict[str, Any]], deleted: frozenset[str] = frozenset()
) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(resource_current),
            [
                {
                    "resource_type": r["resourceType"],
                    "resource_id": r["id"],
                    "version_id": 1,
                    "last_updated": 0,
                    "deleted": r["id"] in deleted,
                    "seq": n,
                    "content": None if r["id"] in deleted else orjson.dumps(r),
                }
                for n, r in enumerate(resources, 1)
            ],
        )


def test_reindex_rebuilds_from_current_state(engine: Engine) -> None:
    resources = [patient(f"p{n}", f"Family{n}") for n in range(7)]
    resources.append(observation("o1", "p1", "8302-2", 180))
    store_current(engine, resources, deleted=frozenset({"p6"}))
    indexer = Indexer(default_registry())
    with engine.begin() as conn:
        done = indexer.reindex(conn, chunk=3)
    assert done == 7
    assert strings(engine, "family") == {(f"p{n}", f"family{n}") for n in range(6)}
    assert owned(engine, "Observation", "o1")["token"] > 0

    # Into emptied tables (as replay does), without the per-resource deletes: same rows.
    before = owned(engine, "Patient", "p1")
    with engine.begin() as conn:
        for table in INDEX_TABLES.values():
            conn.execute(table.delete())
        assert indexer.reindex(conn, delete_existing=False) == 7
    assert owned(engine, "Patient", "p1") == before

    # Limited to one type: other types' rows stay as they are.
    with engine.begin() as conn:
        assert indexer.reindex(conn, ["Observation"]) == 1
    assert len(strings(engine, "family")) == 6


def test_reindex_for_a_runtime_search_parameter(engine: Engine) -> None:
    registry = default_registry()
    indexer = Indexer(registry)
    resources = [patient("p1", "One"), patient("p2", "Two", "male")]
    resources[0]["extension"] = [{"url": "http://example.org/nickname", "valueString": "Annie"}]
    store_current(engine, resources)
    with engine.begin() as conn:
        indexer.reindex(conn)
    before = owned(engine, "Patient", "p1")
    registry.add(
        {
            "resourceType": "SearchParameter",
            "url": "http://example.org/SearchParameter/nickname",
            "code": "nickname",
            "base": ["Patient"],
            "type": "string",
            "status": "active",
            "expression": "Patient.extension('http://example.org/nickname').value.ofType(string)",
        }
    )
    with engine.begin() as conn:
        assert indexer.reindex(conn, ["Patient"], ["nickname"]) == 2
    assert strings(engine, "nickname") == {("p1", "annie")}
    after = owned(engine, "Patient", "p1")
    assert after["string"] == before["string"] + 1
    assert after["token"] == before["token"]
    with engine.connect() as conn:
        genders = conn.execute(
            select(index_token.c.resource_id, index_token.c.code).where(
                index_token.c.param == "gender"
            )
        ).all()
    assert sorted(genders) == [("p1", "female"), ("p2", "male")]


def test_replace_touches_exactly_the_given_resources(engine: Engine) -> None:
    """Deletes match (type, id) pairs: Patient/1 with Observation/2 leaves Patient/2 alone."""
    indexer = Indexer(default_registry())
    with engine.begin() as conn:
        indexer.replace_many(
            conn,
            [
                ("Patient", "1", patient("1", "One")),
                ("Patient", "2", patient("2", "Two")),
                ("Observation", "1", observation("1", "1", "8302-2", 1)),
                ("Observation", "2", observation("2", "2", "8302-2", 2)),
            ],
        )
    before = {t: owned(engine, *t) for t in [("Patient", "2"), ("Observation", "1")]}
    with engine.begin() as conn:
        indexer.replace_many(conn, [("Patient", "1", None), ("Observation", "2", None)])
    assert {t: owned(engine, *t) for t in before} == before
    assert sum(owned(engine, "Patient", "1").values()) == 0
    assert sum(owned(engine, "Observation", "2").values()) == 0


def test_rows_of_a_removed_parameter_go_with_the_next_write(engine: Engine) -> None:
    registry = default_registry()
    indexer = Indexer(registry)
    definition = registry.add(
        {
            "resourceType": "SearchParameter",
            "url": "http://example.org/SearchParameter/weight",
            "code": "weight",
            "base": ["Patient"],
            "type": "quantity",
            "status": "active",
            "expression": "Patient.extension('http://example.org/weight').value.ofType(Quantity)",
        }
    )
    heavy = patient("p1", "One")
    heavy["extension"] = [{"url": "http://example.org/weight", "valueQuantity": {"value": 80}}]
    with engine.begin() as conn:
        indexer.replace_many(conn, [("Patient", "p1", heavy)])
    assert owned(engine, "Patient", "p1")["quantity"] == 1
    registry.remove(definition.url)
    with engine.begin() as conn:
        indexer.replace_many(conn, [("Patient", "p1", heavy)])
    assert owned(engine, "Patient", "p1")["quantity"] == 0


def rows_of(engine: Engine, kind: str, resource_type: str, resource_id: str) -> list[Any]:
    """One resource's rows in ``kind``'s table, values only, sorted."""
    table = INDEX_TABLES[kind]
    with engine.connect() as conn:
        found = conn.execute(
            select(table).where(
                table.c.resource_type == resource_type, table.c.resource_id == resource_id
            )
        ).all()
    return sorted((tuple(row) for row in found), key=repr)


#: The rowids of o1's token rows an update keeps (its category and its code).
KEPT_ROWIDS = (
    "SELECT rowid FROM index_token WHERE resource_id = 'o1'"
    " AND param IN ('category', 'code') AND code IS NOT 'stray' ORDER BY rowid"
)


def test_an_update_rewrites_only_the_rows_that_changed(engine: Engine) -> None:
    """An update leaves the rows whose values it keeps where they are (on SQLite the same
    rowids: their index pages are not rewritten) and ends with exactly the rows extraction
    gives, on both backends: a row the resource no longer has goes, a new one comes, and a
    stray stored row is removed."""
    indexer = Indexer(default_registry())
    before = observation("o1", "p1", "29463-7", 70)
    before["category"] = [{"text": "vitals"}]
    with engine.begin() as conn:
        indexer.replace_many(
            conn,
            [("Observation", "o1", before), ("Observation", "o2", observation("o2", "p1", "1", 1))],
            new={("Observation", "o1"), ("Observation", "o2")},
        )
        conn.execute(
            insert(index_token).values(
                resource_type="Observation", resource_id="o1", param="code", code="stray"
            )
        )
    kept = rows_of(engine, "token", "Observation", "o1")
    after = {**before, "subject": {"reference": "Patient/p2"}}
    with engine.begin() as conn:
        stable = engine.dialect.name == "sqlite"
        if stable:
            rowids = conn.exec_driver_sql(KEPT_ROWIDS).all()
        indexer.replace_many(conn, [("Observation", "o1", after)], keep_unchanged=True)
    expected = indexer.extractor.extract(after)
    for kind in INDEX_TABLES:
        want = sorted(
            (
                tuple(row[column.name] for column in INDEX_TABLES[kind].columns)
                for row in expected.get(kind, [])
            ),
            key=repr,
        )
        assert rows_of(engine, kind, "Observation", "o1") == want, kind
    assert [row for row in kept if row[4] != "stray"] == rows_of(
        engine, "token", "Observation", "o1"
    )
    assert [row[4] for row in rows_of(engine, "reference", "Observation", "o1")] == ["p2", "p2"]
    if stable:
        with engine.connect() as conn:
            assert len(rowids) == 2
            assert conn.exec_driver_sql(KEPT_ROWIDS).all() == rowids
