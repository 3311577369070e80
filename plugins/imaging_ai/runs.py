"""The plugin's own tables: studies waiting to be quiet, and analysis runs.

``imaging_ai_study``: one row per (tenant, ImagingStudy id) seen by the consumer, with the time
of its last change; a study is *claimed* for analysis by an ``UPDATE ... WHERE claimed = 0``
that only one process can win, so several API processes never analyse a study twice. A change
after the claim makes it pending again; ``imaging_ai_inputs`` keeps a fingerprint of the
instances each study was last analysed with, so a change that brought no new instance (the
plugin's own SEG, SR and presentation state stored back) ends without a second run.
``imaging_ai_run``: one row per model run, with its status (``running``, ``done``,
``failed``), the reason of a failure and the preliminary DiagnosticReport it wrote.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text, and_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from fhirhub.sdk import Hub, HubLocal, PluginDatabase

metadata = MetaData()

studies = Table(
    "imaging_ai_study",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("study_id", String(64), primary_key=True),
    Column("study_uid", String(128), nullable=False),
    Column("last_change", Float, nullable=False),
    Column("claimed", Integer, nullable=False, default=0),
)

inputs = Table(
    "imaging_ai_inputs",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("study_id", String(64), primary_key=True),
    Column("fingerprint", String(64), nullable=False),  # sha256 of the sorted SOP UIDs
    Column("analysed", Float, nullable=False),
)

runs = Table(
    "imaging_ai_run",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant", String(64), nullable=False, index=True),
    Column("study_id", String(64), nullable=False, index=True),
    Column("study_uid", String(128), nullable=False),
    Column("model", String(128), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("report", String(64)),
    Column("instances", Integer, nullable=False, default=0),
    Column("started", Float, nullable=False),
    Column("finished", Float),
    Column("inference_seconds", Float),
)


@dataclass(frozen=True)
class Run:
    id: str
    tenant: str
    study_id: str
    study_uid: str
    model: str
    model_version: str
    status: str
    reason: str | None
    report: str | None
    instances: int
    started: float
    finished: float | None
    inference_seconds: float | None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "imagingStudy": f"ImagingStudy/{self.study_id}",
            "studyInstanceUid": self.study_uid,
            "model": self.model,
            "modelVersion": self.model_version,
            "status": self.status,
            "reason": self.reason,
            "report": f"DiagnosticReport/{self.report}" if self.report else None,
            "instances": self.instances,
            "started": self.started,
            "finished": self.finished,
            "inferenceSeconds": self.inference_seconds,
        }


class RunStore:
    def __init__(self, hub: Hub) -> None:
        self.db = PluginDatabase(hub, metadata)

    def _insert(self, conn: Any) -> Any:
        return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(studies)

    def study_changed(self, tenant: str, study_id: str, study_uid: str, now: float) -> None:
        """A new version of the study: restart its quiet period; a study already claimed is
        pending again (the analysis then decides, by its inputs, whether anything is new)."""
        with self.db.begin() as conn:
            insert = self._insert(conn).values(
                tenant=tenant, study_id=study_id, study_uid=study_uid, last_change=now, claimed=0
            )
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=["tenant", "study_id"],
                    set_={"last_change": now, "study_uid": study_uid, "claimed": 0},
                )
            )

    def analysed_inputs(self, tenant: str, study_id: str) -> str | None:
        """The fingerprint of the instances the study was last analysed with (None: never)."""
        with self.db.read() as conn:
            row = conn.execute(
                select(inputs.c.fingerprint).where(
                    and_(inputs.c.tenant == tenant, inputs.c.study_id == study_id)
                )
            ).first()
        return str(row[0]) if row else None

    def set_analysed_inputs(self, tenant: str, study_id: str, fingerprint: str) -> None:
        with self.db.begin() as conn:
            insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(inputs)
            now = time.time()
            conn.execute(
                insert.values(
                    tenant=tenant, study_id=study_id, fingerprint=fingerprint, analysed=now
                ).on_conflict_do_update(
                    index_elements=["tenant", "study_id"],
                    set_={"fingerprint": fingerprint, "analysed": now},
                )
            )

    def quiet_studies(self, quiet_seconds: float, now: float) -> list[tuple[str, str]]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(studies.c.tenant, studies.c.study_id).where(
                    and_(studies.c.claimed == 0, studies.c.last_change <= now - quiet_seconds)
                )
            ).all()
        return [(r[0], r[1]) for r in rows]

    def claim(self, tenant: str, study_id: str) -> bool:
        with self.db.begin() as conn:
            result = conn.execute(
                update(studies)
                .where(
                    and_(
                        studies.c.tenant == tenant,
                        studies.c.study_id == study_id,
                        studies.c.claimed == 0,
                    )
                )
                .values(claimed=1)
            )
            return bool(result.rowcount == 1)

    def start(self, tenant: str, study_id: str, study_uid: str, model: str, version: str) -> str:
        run_id = str(uuid.uuid4())
        with self.db.begin() as conn:
            conn.execute(
                runs.insert().values(
                    id=run_id,
                    tenant=tenant,
                    study_id=study_id,
                    study_uid=study_uid,
                    model=model,
                    model_version=version,
                    status="running",
                    instances=0,
                    started=time.time(),
                )
            )
        return run_id

    def finish(
        self,
        run_id: str,
        status: str,
        *,
        reason: str | None = None,
        report: str | None = None,
        instances: int = 0,
        inference_seconds: float | None = None,
    ) -> None:
        with self.db.begin() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(
                    status=status,
                    reason=reason,
                    report=report,
                    instances=instances,
                    finished=time.time(),
                    inference_seconds=inference_seconds,
                )
            )

    def list(
        self, tenant: str | None, *, study_id: str | None = None, limit: int = 200
    ) -> list[Run]:
        """Runs of one tenant (``None``: every tenant), newest first."""
        query = select(runs).order_by(runs.c.started.desc()).limit(limit)
        if tenant is not None:
            query = query.where(runs.c.tenant == tenant)
        if study_id is not None:
            query = query.where(runs.c.study_id == study_id)
        with self.db.read() as conn:
            return [Run(**row._mapping) for row in conn.execute(query)]


_stores: HubLocal[RunStore] = HubLocal("imaging_ai.runs")


def run_store(hub: Hub) -> RunStore:
    return _stores.setdefault(hub, lambda: RunStore(hub))
