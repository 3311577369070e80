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
