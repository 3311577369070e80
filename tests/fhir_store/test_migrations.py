"""The Alembic migrations produce exactly the schema the code declares, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import fhirhub.fhir_store.search.index_tables  # noqa: F401
from fhirhub.fhir_store.database import make_engine
from fhirhub.fhir_store.migrations import current_revision, upgrade
from fhirhub.fhir_store.schema import metadata


def test_migrated_schema_matches_the_declared_tables(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)  # idempotent on an already-migrated database

    def core_only(
        obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
    ) -> bool:
        # Plugins own their tables (the security plugin's, for one) outside these migrations.
        table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
        return table is None or table in metadata.tables or table == "alembic_version"

    with engine.connect() as conn:
        opts = {"compare_type": True, "include_object": core_only}
        context = MigrationContext.configure(conn, opts=opts)
        differences = compare_metadata(context, metadata)
    assert current_revision(engine) is not None
    engine.dispose()
    assert differences == []


def test_the_compartment_migration_places_earlier_versions_where_their_resource_is(
    database_url: str,
) -> None:
    """Revision 0005 backfills ``version_compartment`` from the reference index: every version
    of a resource in the compartments the resource is in now, a Patient in its own."""
    from alembic import command
    from sqlalchemy import insert, select

    from fhirhub.fhir_store.migrations import alembic_config
    from fhirhub.fhir_store.schema import resource_version, version_compartment
    from fhirhub.fhir_store.search.index_tables import index_reference

    engine = make_engine(database_url)
    command.downgrade(alembic_config(engine), "0004")
    row = {"last_updated": 1, "method": "PUT", "deleted": False, "content": b"{}"}
    with engine.begin() as conn:
        conn.execute(
            insert(resource_version),
            [
                {**row, "resource_type": "Patient", "resource_id": "p", "version_id": 1},
                {**row, "resource_type": "Observation", "resource_id": "o", "version_id": 1},
                {**row, "resource_type": "Observation", "resource_id": "o", "version_id": 2},
            ],
        )
        conn.execute(
            insert(index_reference),
            [
                {
                    "resource_type": "Observation",
                    "resource_id": "o",
                    "param": "subject",
                    "target_type": "Patient",
                    "target_id": "p",
                },
                {
                    "resource_type": "Observation",
                    "resource_id": "o",
                    "param": "focus",
                    "target_type": "Patient",
                    "target_id": "q",
                },  # not a compartment parameter
            ],
        )
    upgrade(engine)
    with engine.connect() as conn:
        log, vc = resource_version.c, version_compartment.c
        rows = conn.execute(
            select(vc.patient_id, log.resource_id, log.version_id).join(
                resource_version, log.seq == vc.seq
            )
        ).all()
    engine.dispose()
    assert sorted(tuple(r) for r in rows) == [("p", "o", 1), ("p", "o", 2), ("p", "p", 1)]
