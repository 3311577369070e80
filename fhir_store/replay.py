"""Rebuild every projection from the version log (``fhirhub replay``).

The log is the truth; the current-state table and the search indexes are derived. Replaying
drops the projections and recomputes them: the latest version of every resource becomes its
current row, then the indexes are rebuilt from those rows with the same extractor the write path
uses, so search results after a replay are identical to before.

A replay copies only a log that verifies: in the same transaction, before anything is dropped,
every entry's digest and link are recomputed (:func:`fhirhub.fhir_store.chain.verify_on`), so
tampered log content is never copied into the projections (the replay is refused, naming the
first bad entry, and the projections stay as they were).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import delete, func, insert, select

from fhirhub.fhir_store.chain import Report, verify_on
from fhirhub.fhir_store.database import is_sqlite
from fhirhub.fhir_store.errors import FhirError
from fhirhub.fhir_store.schema import resource_current, resource_version
from fhirhub.fhir_store.search.index_tables import INDEX_TABLES
from fhirhub.fhir_store.store import FhirStore

CHUNK = 2000

_SIGNATURE_PROBLEMS = frozenset({"unknown-key", "signature-invalid", "signed-head-missing"})


class TamperedLog(FhirError):
    """The log does not verify: nothing was replayed."""

    def __init__(self, report: Report) -> None:
        first = report.first_problem
        assert first is not None
        super().__init__(
            409, f"The version log does not verify; nothing was replayed: {first.describe()}"
        )
        self.report = report


def replay(store: FhirStore, progress: Callable[[int], None] | None = None) -> int:
    """Rebuild projections in one transaction; returns the number of current resources.
    Raises :class:`TamperedLog` (and changes nothing) when the log's chain does not verify."""
    with store.unit_of_work() as uow:
        conn = uow.conn
        if not is_sqlite(conn.engine):  # no appends while the log is verified and copied
            from fhirhub.fhir_store.store import _PG_LOG_LOCK

            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOG_LOCK})")
        report = verify_on(conn)
        # Signatures are the integrity plugin's business (it holds the keys); the chain of
        # digests and links is what decides whether the content may be copied.
        chain = [p for p in report.problems if p.kind not in _SIGNATURE_PROBLEMS]
        if chain:
            report.problems = chain
            raise TamperedLog(report)
        for table in INDEX_TABLES.values():
            conn.execute(delete(table))
        conn.execute(delete(resource_current))
        latest = (
            select(
                resource_version.c.resource_type,
                resource_version.c.resource_id,
                func.max(resource_version.c.seq).label("seq"),
            )
            .group_by(resource_version.c.resource_type, resource_version.c.resource_id)
            .subquery()
        )
        conn.execute(
            insert(resource_current).from_select(
                [
                    "resource_type",
                    "resource_id",
                    "version_id",
                    "last_updated",
                    "deleted",
                    "seq",
                    "content",
                    "tenant",
                ],
                select(
                    resource_version.c.resource_type,
                    resource_version.c.resource_id,
                    resource_version.c.version_id,
                    resource_version.c.last_updated,
                    resource_version.c.deleted,
                    resource_version.c.seq,
                    resource_version.c.content,
                    resource_version.c.tenant,
                ).join(latest, resource_version.c.seq == latest.c.seq),
            )
        )
        count = store.indexer.reindex(conn)
        if progress is not None:
            progress(count)
    return int(count)
