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
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    assert current_revision(engine) is not None
    engine.dispose()
    assert differences == []
