"""Tables a plugin owns, in the hub's database.

Most plugins need none: they store FHIR resources. A plugin that keeps state FHIR has no place
for (login sessions, a DICOM file catalogue, a terminology's concept table, a graph index)
declares its tables on its own SQLAlchemy ``MetaData`` and gets them created here. Name them
after the plugin (``security_user``, ``dicom_instance``), since all plugins share one database.
A table that derives from FHIR resources is a projection: keep it with a
:class:`fhirhub.sdk.Consumer` that can ``reset`` and rebuild it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, MetaData

from fhirhub.core.hub import Hub
from fhirhub.fhir_store.database import write_transaction


class PluginDatabase:
    """The hub's database as seen by one plugin: its engine and a write transaction that
    behaves the same on SQLite (one writer: ``BEGIN IMMEDIATE``) and PostgreSQL."""

    def __init__(self, hub: Hub, metadata: MetaData | None = None) -> None:
        self.engine: Engine = hub.store.engine
        self.is_sqlite = hub.store.is_sqlite
        if metadata is not None:
            # In a write transaction taken up front: SQLite answers "database is locked" at
            # once, without waiting, when a deferred transaction that has read (create_all's
            # table checks) must become a writer while another connection writes, as happens
            # at start-up when several plugins create tables and load data.
            with self.begin() as conn:
                metadata.create_all(conn, checkfirst=True)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction: commits on normal exit, rolls back on an exception."""
        with write_transaction(self.engine) as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (a consistent snapshot)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn
