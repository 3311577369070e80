"""Rebuild every projection from the version log (``fhirhub replay``).

The log is the truth; the current-state table and the search indexes are derived. Replaying
drops the projections and recomputes them: the latest version of every resource becomes its
current row, then the indexes are rebuilt from those rows with the same extractor the write path
uses, so search results after a replay are identical to before.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import delete, func, insert, select

from fhirhub.fhir_store.schema import resource_current, resource_version
from fhirhub.fhir_store.search.index_tables import INDEX_TABLES
from fhirhub.fhir_store.store import FhirStore

CHUNK = 2000


def replay(store: FhirStore, progress: Callable[[int], None] | None = None) -> int:
    """Rebuild projections in one transaction; returns the number of current resources."""
    with store.unit_of_work() as uow:
        conn = uow.conn
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
