"""The graph index: a projection of the knowledge resources in the version log.

``knowledge_edge`` holds one row per edge a current knowledge resource states (tenant,
resource, ordinal, the edge as JSON); ``knowledge_state`` a generation number the consumer
bumps on every change, so each process rebuilds its in-memory :class:`Graph` only when the
graph changed (one indexed read per check otherwise). ``fhirhub replay`` rebuilds the rows
from the log (the consumer's ``reset``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import orjson
from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)

from fhirhub.plugins.knowledge.fhir_codec import EDGE_TYPES, EdgeError, edges_of
from fhirhub.plugins.knowledge.graph import Graph
from fhirhub.plugins.knowledge.model import Edge
from fhirhub.sdk import Hub, PluginDatabase, StoredVersion

log = logging.getLogger("fhirhub.knowledge")
#: How long a process trusts its graph before reading the generation again.
RECHECK_S = 1.0
metadata = MetaData()

knowledge_edge = Table(
    "knowledge_edge",
    metadata,
    Column("resource_type", String(64), primary_key=True),
    Column("resource_id", String(64), primary_key=True),
    Column("ordinal", Integer, primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("edge", Text, nullable=False),
)
knowledge_state = Table(
    "knowledge_state",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("generation", Integer, nullable=False),
)


class GraphIndex:
    def __init__(self, hub: Hub) -> None:
        self.db = PluginDatabase(hub, metadata)
        self._lock = threading.Lock()
        self._graph = Graph([])
        self._generation = -1
        self._checked = -RECHECK_S

    def apply(self, versions: Sequence[StoredVersion]) -> None:
        """The consumer's handle: replace each resource's rows by what its version states."""
        versions = [v for v in versions if v.resource_type in EDGE_TYPES]
        if not versions:
            return
        with self.db.begin() as conn:
            for version in versions:
                conn.execute(
                    delete(knowledge_edge).where(
                        knowledge_edge.c.resource_type == version.resource_type,
                        knowledge_edge.c.resource_id == version.resource_id,
                    )
                )
                if version.deleted or version.content is None:
                    continue
                try:
                    edges = edges_of(
                        orjson.loads(version.content), version.resource_id, version.tenant or ""
                    )
                except EdgeError as error:  # written before the check existed, or by the system
                    log.warning("%s/%s: %s", version.resource_type, version.resource_id, error)
                    continue
                if edges:
                    conn.execute(
                        insert(knowledge_edge),
                        [
                            {
                                "resource_type": version.resource_type,
                                "resource_id": version.resource_id,
                                "ordinal": ordinal,
                                "tenant": version.tenant or "",
                                "edge": orjson.dumps(edge.to_json()).decode(),
                            }
                            for ordinal, edge in enumerate(edges)
                        ],
                    )
            self._bump(conn)
        # Rebuild this process's graph now, on the consumer's thread, rather than in the
        # next order check (which runs inside a writer's transaction).
        self.graph(fresh=True)

    def clear(self) -> None:
        with self.db.begin() as conn:
            conn.execute(delete(knowledge_edge))
            self._bump(conn)
        self.graph(fresh=True)

    def _bump(self, conn: Connection) -> None:
        changed = conn.execute(
            update(knowledge_state)
            .where(knowledge_state.c.name == "graph")
            .values(generation=knowledge_state.c.generation + 1)
        )
        if changed.rowcount == 0:
            conn.execute(insert(knowledge_state).values(name="graph", generation=1))

    def generation(self) -> int:
        with self.db.read() as conn:
            value = conn.execute(
                select(knowledge_state.c.generation).where(knowledge_state.c.name == "graph")
            ).scalar_one_or_none()
        return int(value or 0)

    def graph(self, *, fresh: bool = False) -> Graph:
        """The current graph, rebuilt in this process only when the generation moved. The
        generation is read at most every ``RECHECK_S`` (the consumer of this process asks for
        a ``fresh`` one after each change; another process's change shows within a second)."""
        now = time.monotonic()
        if not fresh and now - self._checked < RECHECK_S:
            return self._graph
        generation = self.generation()
        self._checked = now
        if generation == self._generation:
            return self._graph
        with self._lock:
            if generation != self._generation:
                with self.db.read() as conn:
                    rows = conn.execute(select(knowledge_edge.c.edge)).scalars().all()
                self._graph = Graph([Edge.from_json(orjson.loads(row)) for row in rows])
                self._generation = generation
        return self._graph
