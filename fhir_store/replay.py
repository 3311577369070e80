"""Rebuild every projection from the version log (``fhirhub replay``).

The log is the truth; the current-state table and the search indexes are derived. Replaying
drops the projections and recomputes them: the latest version of every resource becomes its
current row, then the indexes are rebuilt from those rows with the same extractor the write path
uses, so search results after a replay are identical to before.

A replay copies only a log that verifies: in the same transaction, before anything is dropped,
every entry's digest and link are recomputed (:func:`fhirhub.fhir_store.chain.verify_on`), so
tampered log content is never copied into the projections (the replay is refused, naming the
first bad entry, and the projections stay as they were). Given a :class:`Trust` (the
``log_trust`` hook: the integrity plugin's keys and the heads it anchored outside the
database), the signatures and anchored heads must verify too, which catches a log rewritten
from some row to the end with its hashes recomputed and the newer signatures deleted.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from sqlalchemy import Connection, delete, func, insert, select

from fhirhub.fhir_store.chain import SIGNATURE_PROBLEMS, STALE_SIGNATURE, Report, Trust, verify_on
from fhirhub.fhir_store.database import is_sqlite
from fhirhub.fhir_store.encryption import opened
from fhirhub.fhir_store.errors import FhirError
from fhirhub.fhir_store.projections import clear_alarms
from fhirhub.fhir_store.schema import resource_current, resource_version, version_compartment
from fhirhub.fhir_store.search.compartment import patients_of
from fhirhub.fhir_store.search.index import executemany
from fhirhub.fhir_store.search.index_tables import INDEX_TABLES
from fhirhub.fhir_store.search.visibility import patient_guarded_types
from fhirhub.fhir_store.store import FhirStore, read_version

CHUNK = 2000
_INSERT_COMPARTMENTS = insert(version_compartment)


class TamperedLog(FhirError):
    """The log does not verify: nothing was replayed."""

    def __init__(self, report: Report) -> None:
        first = report.first_problem
        assert first is not None
        super().__init__(
            409, f"The version log does not verify; nothing was replayed: {first.describe()}"
        )
        self.report = report


def replay(
    store: FhirStore, progress: Callable[[int], None] | None = None, trust: Trust | None = None
) -> int:
    """Rebuild projections in one transaction; returns the number of current resources.
    Raises :class:`TamperedLog` (and changes nothing) when the log's chain does not verify,
    or, given ``trust``, when a signature or an anchored head does not."""
    with store.unit_of_work() as uow:
        conn = uow.conn
        if not is_sqlite(conn.engine):  # no appends while the log is verified and copied
            from fhirhub.fhir_store.store import _PG_LOG_LOCK

            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOG_LOCK})")
        report = verify_on(conn, trust=trust)
        # Without trust (no integrity plugin: no keys) signatures cannot be judged, and the
        # chain of digests and links alone decides; an old unsigned tail (a crash) is for
        # ``fhirhub verify`` to report, not a reason to refuse a rebuild.
        ignored = SIGNATURE_PROBLEMS if trust is None else frozenset({STALE_SIGNATURE})
        refused = [p for p in report.problems if p.kind not in ignored]
        if refused:
            report.problems = refused
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
        count = store.indexer.reindex(conn, delete_existing=False)  # emptied above
        _rebuild_compartments(store, conn)
        if progress is not None:
            progress(count)
    clear_alarms(store.engine)  # the projections are the log's again
    return int(count)


def _rebuild_compartments(store: FhirStore, conn: Connection) -> None:
    """``version_compartment`` from every version of the log, as the write path records it: a
    deletion takes the compartments of the version it ends."""
    conn.execute(delete(version_compartment))
    log = resource_version.c
    extractor = store.indexer.extractor
    last = 0
    while True:
        batch = conn.execute(
            select(log.seq, log.resource_type, log.resource_id, log.version_id, log.content)
            .where(log.seq > last, log.resource_type.in_(sorted(patient_guarded_types())))
            .order_by(log.seq)
            .limit(CHUNK)
        ).all()
        if not batch:
            return
        rows: list[dict[str, object]] = []
        for seq, resource_type, resource_id, version_id, content in batch:
            plain = opened(conn, content)
            if plain is None and version_id > 1:  # a deletion: the version it ends
                ended = read_version(conn, resource_type, resource_id, version_id - 1)
                plain = ended.content if ended is not None else None
            if plain is None:
                continue
            resource = {**orjson.loads(plain), "id": resource_id}
            rows.extend({"patient_id": p, "seq": seq} for p in patients_of(extractor, resource))
        if rows:
            executemany(conn, _INSERT_COMPARTMENTS, rows)
        last = batch[-1].seq
