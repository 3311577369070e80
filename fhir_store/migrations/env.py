"""Alembic environment: runs against the engine handed over in ``config.attributes``."""

from __future__ import annotations

from alembic import context

import fhirhub.fhir_store.search.index_tables  # noqa: F401  (registers the index tables)
from fhirhub.fhir_store.schema import metadata

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # `alembic` command line: take the URL from the ini / FHIRHUB_DB
    import os

    from fhirhub.fhir_store.database import make_engine

    engine = make_engine(
        os.environ.get("FHIRHUB_DB") or config.get_main_option("sqlalchemy.url") or ""
    )

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
