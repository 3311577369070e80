"""The store's unit of work: immutable versions, projections, replay."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import func, select, update

from fhirhub.fhir_store.database import make_engine
from fhirhub.fhir_store.replay import replay
from fhirhub.fhir_store.schema import resource_current, resource_version, version_compartment
from fhirhub.fhir_store.search.index_tables import INDEX_TABLES
from fhirhub.fhir_store.search.query import search
from fhirhub.fhir_store.store import FhirStore, read_current, read_history


@pytest.fixture
def store(database_url: str) -> FhirStore:
    return FhirStore(make_engine(database_url))


def patient(family: str) -> dict[str, object]:
    return {"resourceType": "Patient", "name": [{"family": family}], "gender": "female"}


def test_every_write_appends_an_immutable_version(store: FhirStore) -> None:
    with store.unit_of_work() as uow:
        first = uow.put("Patient", "p1", patient("One"), method="POST")
    with store.unit_of_work() as uow:
        second = uow.put("Patient", "p1", patient("Two"))
    with store.unit_of_work() as uow:
        tombstone = uow.delete("Patient", "p1")
    assert (first.version_id, second.version_id) == (1, 2)
    assert tombstone is not None and tombstone.version_id == 3 and tombstone.deleted
    with store.read() as conn:
        versions, total = read_history(conn, "Patient", "p1")
        current = read_current(conn, "Patient", "p1")
    assert total == 3 and [v.version_id for v in versions] == [3, 2, 1]
    assert versions[2].seq < versions[1].seq < versions[0].seq  # the global sequence
    assert orjson.loads(versions[2].content or b"")["name"][0]["family"] == "One"
    assert current is not None and current.deleted and current.version_id == 3


def test_meta_is_stamped_and_element_order_kept(store: FhirStore) -> None:
    resource = {"resourceType": "Patient", "meta": {"tag": [{"code": "x"}]}, "active": True}
    with store.unit_of_work() as uow:
        version = uow.put("Patient", "p2", resource)
    stored = orjson.loads(version.content or b"")
    assert list(stored) == ["resourceType", "id", "meta", "active"]
    assert stored["meta"]["tag"] == [{"code": "x"}]
    assert stored["meta"]["versionId"] == "1"
    assert stored["meta"]["lastUpdated"].endswith("Z")


def test_a_failed_unit_of_work_leaves_nothing(store: FhirStore) -> None:
    with pytest.raises(RuntimeError), store.unit_of_work() as uow:
        uow.put("Patient", "p3", patient("Three"))
        uow.flush()
        raise RuntimeError("crash after the flush, before commit")
    with store.read() as conn:
        assert read_current(conn, "Patient", "p3") is None
        assert conn.execute(select(func.count()).select_from(resource_version)).scalar_one() == 0


def test_replay_rebuilds_projections_with_identical_search_results(store: FhirStore) -> None:
    with store.unit_of_work() as uow:
        for index in range(20):
            uow.put(
                "Patient",
                f"r{index}",
                {**patient(f"Family{index % 3}"), "birthDate": f"19{50 + index}-01-01"},
            )
    with store.unit_of_work() as uow:
        uow.put("Patient", "r0", {**patient("Changed"), "birthDate": "2001-01-01"})
        uow.delete("Patient", "r1")
    queries = [
        [("family", "family1")],
        [("family", "changed")],
        [("birthdate", "lt1960")],
        [("_sort", "-birthdate"), ("_count", "5")],
    ]

    def answers() -> list[bytes]:
        with store.read() as conn:
            return [
                search(conn, store.registry, "Patient", q, base_url="http://h/fhir")
                for q in queries
            ]

    before = answers()
    with store.unit_of_work() as uow:  # wreck the projections
        uow.conn.execute(update(resource_current).values(content=b"{}"))
        for table in INDEX_TABLES.values():
            uow.conn.execute(table.delete())
    replay(store)
    after = answers()
    strip = lambda b: [e["resource"]["id"] for e in orjson.loads(b).get("entry", [])]  # noqa: E731
    assert [strip(b) for b in after] == [strip(b) for b in before]
    assert [orjson.loads(b)["total"] for b in after] == [orjson.loads(b)["total"] for b in before]


def compartments(store: FhirStore) -> set[tuple[str, str, int]]:
    """(patient, resource, version) of every ``version_compartment`` row."""
    log, vc = resource_version.c, version_compartment.c
    with store.read() as conn:
        rows = conn.execute(
            select(vc.patient_id, log.resource_type, log.resource_id, log.version_id).join(
                resource_version, log.seq == vc.seq
            )
        ).all()
    return {(p, f"{t}/{i}", v) for p, t, i, v in rows}


def test_each_version_keeps_the_compartments_it_was_written_in(store: FhirStore) -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "pulse"},
        "subject": {"reference": "Patient/a"},
        "performer": [{"reference": "Patient/b"}, {"reference": "Practitioner/x"}],
    }
    with store.unit_of_work() as uow:
        uow.put("Patient", "a", patient("A"))
        uow.put("Observation", "o1", observation)
        uow.put("Practitioner", "x", {"resourceType": "Practitioner"})
    with store.unit_of_work() as uow:  # moved to patient c, then deleted, in one unit
        uow.put("Observation", "o1", {**observation, "subject": {"reference": "Patient/c"}})
        uow.delete("Observation", "o1")
    with store.unit_of_work() as uow:
        uow.delete("Patient", "a")
    expected = {
        ("a", "Patient/a", 1),
        ("a", "Patient/a", 2),  # a deletion keeps the compartments of what it ends
        ("a", "Observation/o1", 1),
        ("b", "Observation/o1", 1),
        ("c", "Observation/o1", 2),
        ("b", "Observation/o1", 2),
        ("c", "Observation/o1", 3),
        ("b", "Observation/o1", 3),
    }
    assert compartments(store) == expected  # Practitioner/x is in no patient's compartment
    with store.unit_of_work() as uow:
        uow.conn.execute(version_compartment.delete())
    replay(store)
    assert compartments(store) == expected
