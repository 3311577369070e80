"""The candidate index: the MPI's own tables, a projection of the Patient versions in the log.

* ``mpi_patient``: one row per (tenant, Patient): its :class:`Features` as JSON and their
  digest (an update that changes nothing matching looks at is not matched again);
* ``mpi_block``: the blocking keys of each Patient, and its identifiers as ``id:system|value``
  keys, so candidates are one indexed lookup per record;
* ``mpi_rejection``: pairs a person judged "not the same" (from rejected review Tasks), never
  proposed again.

Every row is keyed by tenant: a lookup names the tenant, so matching cannot cross tenants.
The tables are rebuilt from the log by ``fhirhub replay`` (the consumer's ``reset``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import orjson
from sqlalchemy import (
    Column,
    Connection,
    Index,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    or_,
    select,
)

from fhirhub.plugins.mpi.features import Features
from fhirhub.sdk import Hub, PluginDatabase

metadata = MetaData()

#: The tenant column's value for resources without a tenant label (a single-tenant hub).
NO_TENANT = ""

mpi_patient = Table(
    "mpi_patient",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("patient_id", String(64), primary_key=True),
    Column("digest", String(32), nullable=False),
    Column("features", Text, nullable=False),
)

mpi_block = Table(
    "mpi_block",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("block_key", String(200), primary_key=True),
    Column("patient_id", String(64), primary_key=True),
    Index("ix_mpi_block_patient", "tenant", "patient_id"),
)

mpi_rejection = Table(
    "mpi_rejection",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("first_id", String(64), primary_key=True),
    Column("second_id", String(64), primary_key=True),
    Column("task_id", String(64), nullable=False),
)

#: At most this many candidates are scored for one record (the most keys shared first).
MAX_CANDIDATES = 200


def identifier_key(system: str, value: str) -> str:
    return f"id:{system}|{value}"[:200]


def keys_of(features: Features) -> set[str]:
    keys = {key[:200] for key in features.blocking_keys()}
    keys.update(identifier_key(system, value) for system, value in features.identifiers)
    return keys


def pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


class CandidateIndex:
    """The tables above, opened on the hub's database."""

    def __init__(self, hub: Hub) -> None:
        self.db = PluginDatabase(hub, metadata)

    def digest(self, tenant: str, patient_id: str) -> str | None:
        with self.db.read() as conn:
            value = conn.execute(
                select(mpi_patient.c.digest).where(
                    mpi_patient.c.tenant == tenant, mpi_patient.c.patient_id == patient_id
                )
            ).scalar()
        return str(value) if value is not None else None

    def put(self, tenant: str, features: Features) -> None:
        """Store (or replace) one Patient's row and keys."""
        self.put_many(tenant, [features])

    def put_many(self, tenant: str, many: Sequence[Features]) -> None:
        if not many:
            return
        ids = [f.patient_id for f in many]
        with self.db.begin() as conn:
            self._remove(conn, tenant, ids)
            conn.execute(
                insert(mpi_patient),
                [
                    {
                        "tenant": tenant,
                        "patient_id": f.patient_id,
                        "digest": f.digest(),
                        "features": orjson.dumps(f.to_json()).decode(),
                    }
                    for f in many
                ],
            )
            rows = [
                {"tenant": tenant, "block_key": key, "patient_id": f.patient_id}
                for f in many
                for key in keys_of(f)
            ]
            if rows:
                conn.execute(insert(mpi_block), rows)

    def remove(self, tenant: str, patient_id: str) -> None:
        with self.db.begin() as conn:
            self._remove(conn, tenant, [patient_id])

    @staticmethod
    def _remove(conn: Connection, tenant: str, ids: list[str]) -> None:
        conn.execute(
            delete(mpi_patient).where(
                mpi_patient.c.tenant == tenant, mpi_patient.c.patient_id.in_(ids)
            )
        )
        conn.execute(
            delete(mpi_block).where(mpi_block.c.tenant == tenant, mpi_block.c.patient_id.in_(ids))
        )

    def candidates(self, tenant: str, features: Features) -> list[Features]:
        """Stored Patients of ``tenant`` sharing a blocking key or an identifier with
        ``features`` (itself excluded), those sharing the most keys first."""
        keys = sorted(keys_of(features))
        if not keys:
            return []
        # Two indexed lookups, counted in Python: a GROUP BY in SQL tempts SQLite's planner
        # into walking the (tenant, patient) index over every row of the tenant.
        with self.db.read() as conn:
            found = conn.execute(
                select(mpi_block.c.patient_id).where(
                    mpi_block.c.tenant == tenant, mpi_block.c.block_key.in_(keys)
                )
            )
            shared = Counter(row[0] for row in found)
            shared.pop(features.patient_id, None)
            best = sorted(shared, key=lambda i: (-shared[i], i))[:MAX_CANDIDATES]
            if not best:
                return []
            rows = conn.execute(
                select(mpi_patient.c.features).where(
                    mpi_patient.c.tenant == tenant, mpi_patient.c.patient_id.in_(best)
                )
            )
            return [Features.from_json(orjson.loads(row[0])) for row in rows]

    def features(self, tenant: str, patient_ids: Iterable[str]) -> dict[str, Features]:
        ids = list(patient_ids)
        if not ids:
            return {}
        with self.db.read() as conn:
            rows = conn.execute(
                select(mpi_patient.c.patient_id, mpi_patient.c.features).where(
                    mpi_patient.c.tenant == tenant, mpi_patient.c.patient_id.in_(ids)
                )
            )
            return {row[0]: Features.from_json(orjson.loads(row[1])) for row in rows}

    def sample_records(self, limit: int) -> list[dict[str, object]]:
        """Up to ``limit`` indexed Patients as scoring records (training data)."""
        with self.db.read() as conn:
            rows = conn.execute(select(mpi_patient.c.features).limit(limit))
            return [Features.from_json(orjson.loads(row[0])).record() for row in rows]

    # -- decisions ---------------------------------------------------------------------------

    def reject(self, tenant: str, a: str, b: str, task_id: str) -> None:
        first, second = pair(a, b)
        with self.db.begin() as conn:
            conn.execute(
                delete(mpi_rejection).where(
                    mpi_rejection.c.tenant == tenant,
                    mpi_rejection.c.first_id == first,
                    mpi_rejection.c.second_id == second,
                )
            )
            conn.execute(
                insert(mpi_rejection).values(
                    tenant=tenant, first_id=first, second_id=second, task_id=task_id
                )
            )

    def rejected(self, tenant: str, patient_id: str) -> set[str]:
        """The Patients judged "not the same" as ``patient_id``."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(mpi_rejection.c.first_id, mpi_rejection.c.second_id).where(
                    mpi_rejection.c.tenant == tenant,
                    or_(
                        mpi_rejection.c.first_id == patient_id,
                        mpi_rejection.c.second_id == patient_id,
                    ),
                )
            )
            return {b if a == patient_id else a for a, b in rows}

    def clear(self) -> None:
        """Drop every row (before the log is delivered again)."""
        with self.db.begin() as conn:
            for table in (mpi_patient, mpi_block, mpi_rejection):
                conn.execute(delete(table))
