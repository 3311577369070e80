"""Finding 15: the projections (current state, search indexes) edited with raw SQL.

Before the fix, changing ``resource_current.content`` or its ``tenant`` column passed
``fhirhub verify`` and ``$verify-chain``, and reads served the edited row (a tenant change
moved the resource into the other tenant's view). Now reads and searches check each served row
against the digest of its log entry, ``verify`` recomputes the projections from the log, and
the ``integrity`` health check fails once a read refused a row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import and_, update

from fhirhub.fhir_store.replay import replay
from fhirhub.fhir_store.schema import resource_current
from fhirhub.fhir_store.search.index_tables import index_string
from fhirhub.plugins.integrity import trust
from tests.security.rest_world import RestWorld, rest_world


def current_row(resource_type: str, resource_id: str) -> Any:
    return and_(
        resource_current.c.resource_type == resource_type,
        resource_current.c.resource_id == resource_id,
    )


def verify(world: RestWorld) -> dict[str, Any]:
    """``$verify-chain`` as the super admin: ``intact`` and the problems' (kind, reference)."""
    response = world.caller("root").get("/$verify-chain")
    assert response.status_code == 200, response.text
    out: dict[str, Any] = {"problems": []}
    for parameter in response.json()["parameter"]:
        if parameter["name"] == "problem":
            parts = {
                p["name"]: next(v for k, v in p.items() if k.startswith("value"))
                for p in parameter["part"]
            }
            out["problems"].append(parts)
        elif parameter["name"] == "intact":
            out["intact"] = parameter["valueBoolean"]
    return out


def ids_of(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if "resource" in e}


def health(world: RestWorld) -> httpx.Response:
    return httpx.get(f"{world.base}/healthz", timeout=30)


def test_edited_current_rows_are_never_served_and_verify_names_them(
    database_url: str, tmp_path: Path
) -> None:
    with rest_world(database_url, tmp_path) as world:
        clin_a, clin_b = world.caller("clin-a"), world.caller("clin-b")
        assert verify(world) == {"intact": True, "problems": []}
        assert health(world).status_code == 200
        foreign = clin_b.get("/Observation/obs-a2").status_code  # what B gets for A's data
        assert foreign in (403, 404)

        engine = world.hub.store.engine
        with engine.begin() as conn:
            # Move org-a's Observation into org-b's view, and forge org-a's Patient pa1.
            conn.execute(
                update(resource_current)
                .where(current_row("Observation", "obs-a1"))
                .values(tenant="org-b")
            )
            conn.execute(
                update(resource_current)
                .where(current_row("Patient", "pa1"))
                .values(
                    content=b'{"resourceType":"Patient","id":"pa1","meta":{"versionId":"1"},'
                    b'"name":[{"family":"Forged"}]}'
                )
            )

        # The other tenant never sees the moved resource: neither by id nor by search.
        assert clin_b.get("/Observation/obs-a1").status_code == foreign
        searched = clin_b.get("/Observation")
        assert searched.status_code == 200 and "obs-a1" not in ids_of(searched.json())
        assert ids_of(clin_b.get("/Observation", params={"_id": "obs-a1"}).json()) == set()
        # Its owner reads what the log holds.
        own = clin_a.get("/Observation/obs-a1")
        assert own.status_code == 200 and own.json()["subject"]["reference"] == "Patient/pa1"

        # The forged content is never served: a read answers the logged version, a search or
        # $everything leaves the row out.
        read = clin_a.get("/Patient/pa1")
        assert read.status_code == 200 and read.json()["name"] == [{"family": "Alpha"}]
        for response in (
            clin_a.get("/Patient"),
            clin_a.get("/Patient", params={"family": "Alpha"}),
            clin_a.get("/Patient/pa1/$everything"),
            clin_a.get("/Observation", params={"_include": "Observation:subject"}),
        ):
            assert response.status_code == 200, response.text
            assert "Forged" not in response.text

        # The refusals raised the alarm, and verify names both rows.
        alarm = health(world)
        assert alarm.status_code == 503 and "integrity" in alarm.text
        checked = verify(world)
        assert checked["intact"] is False
        found = {(p["kind"], p.get("reference")) for p in checked["problems"]}
        assert ("current-altered", "Observation/obs-a1") in found
        assert ("current-altered", "Patient/pa1") in found
        details = " ".join(p["detail"] for p in checked["problems"])
        assert "tenant" in details and "content" in details

        # Replaying rebuilds the projections from the log: intact again, alarm cleared.
        replay(world.hub.store, trust=trust(world.hub))
        assert verify(world) == {"intact": True, "problems": []}
        assert health(world).status_code == 200
        assert ids_of(clin_a.get("/Patient", params={"family": "Alpha"}).json()) == {"pa1"}


def test_verify_names_edited_search_index_rows_and_a_rolled_back_current_row(
    database_url: str, tmp_path: Path
) -> None:
    with rest_world(database_url, tmp_path) as world:
        clin_a = world.caller("clin-a")
        first = clin_a.get("/Patient/pa2").json()
        updated = clin_a.put("/Patient/pa2", json={**first, "name": [{"family": "Gamma"}]})
        assert updated.status_code == 200, updated.text
        engine = world.hub.store.engine
        with engine.begin() as conn:
            # A search for a family name org-b's patient does not have would now match it.
            conn.execute(
                update(index_string)
                .where(index_string.c.resource_id == "pb1", index_string.c.param == "family")
                .values(value="alpha")
            )
            # pa2's current row set back to version 1, consistently with the log's version 1.
            conn.execute(
                update(resource_current)
                .where(current_row("Patient", "pa2"))
                .values(
                    version_id=1,
                    seq=_seq_of(world, "Patient", "pa2", 1),
                    last_updated=_updated_of(world, "Patient", "pa2", 1),
                    content=_content_of(world, "Patient", "pa2", 1),
                )
            )
        # The rolled-back row is not served: the read answers the newest logged version.
        assert clin_a.get("/Patient/pa2").json()["name"] == [{"family": "Gamma"}]
        found = {(p["kind"], p.get("reference")) for p in verify(world)["problems"]}
        assert ("index-altered", "Patient/pb1") in found
        assert ("current-stale", "Patient/pa2") in found


def _log_row(world: RestWorld, resource_type: str, resource_id: str, version: int) -> Any:
    from sqlalchemy import select

    from fhirhub.fhir_store.schema import resource_version as rv

    with world.hub.store.read() as conn:
        return conn.execute(
            select(rv.c.seq, rv.c.last_updated, rv.c.content).where(
                rv.c.resource_type == resource_type,
                rv.c.resource_id == resource_id,
                rv.c.version_id == version,
            )
        ).one()


def _seq_of(world: RestWorld, resource_type: str, resource_id: str, version: int) -> int:
    return int(_log_row(world, resource_type, resource_id, version).seq)


def _updated_of(world: RestWorld, resource_type: str, resource_id: str, version: int) -> int:
    return int(_log_row(world, resource_type, resource_id, version).last_updated)


def _content_of(world: RestWorld, resource_type: str, resource_id: str, version: int) -> bytes:
    return bytes(_log_row(world, resource_type, resource_id, version).content)
