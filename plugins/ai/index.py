"""The retrieval index: chunks of the tenant's records and documents, kept in step with the
store by a consumer of the version log, persisted in the plugin's own table (``ai_chunk``) and
ranked in memory (:mod:`.lexical`).

Searching never trusts the index alone for access: hits are drawn only from the caller's
tenant (and patient, for a patient-facing token) and every hit is then read through the SDK
as the caller, so a chunk of anything the caller may not read is dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import (
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
)

from fhirhub.sdk import (
    Access,
    FhirError,
    Hub,
    HubLocal,
    PluginDatabase,
    StoredVersion,
    acting_as,
    read,
    system_for,
)

from .chunking import Chunk, chunks_of
from .lexical import Bm25Index, Hit, Scope
from .render import INDEXED_TYPES, decode_base64
from .settings import settings_of
from .vectors import VectorIndex, embedder_for, from_bytes, fuse, to_bytes

log = logging.getLogger("fhirhub.ai")

metadata = MetaData()
ai_chunk = Table(
    "ai_chunk",
    metadata,
    Column("resource_type", String(64), primary_key=True),
    Column("resource_id", String(64), primary_key=True),
    Column("chunk_no", Integer, primary_key=True),
    Column("tenant", String(64), nullable=True, index=True),
    Column("patient", String(64), nullable=True),
    Column("text", Text, nullable=False),
    Column("vector", LargeBinary, nullable=True),
)
ai_index_state = Table(
    "ai_index_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("generation", Integer, nullable=False),
)

#: How often a process checks whether another process changed the index.
REFRESH_EVERY_S = 2.0


@dataclass(frozen=True)
class Source:
    """A retrieved chunk the caller may read: what an answer cites."""

    reference: str
    chunk: int
    text: str
    score: float
    matched: tuple[str, ...]

    @property
    def citation(self) -> str:
        return f"{self.reference}#{self.chunk}"

    def as_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "chunk": self.chunk,
            "citation": self.citation,
            "text": self.text,
            "score": self.score,
            "matched": list(self.matched),
        }


class DocumentIndex:
    """See the module docstring."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.db = PluginDatabase(hub, metadata)
        self.chunk_chars = settings_of(hub).chunk_chars
        self.bm25 = Bm25Index()
        self.vectors = VectorIndex()
        self.embedder = embedder_for(settings_of(hub))
        self._generation = -1
        self._checked = 0.0
        self._lock = threading.Lock()
        self._refresh(force=True)

    # -- keeping in step ---------------------------------------------------------------------
    def handle(self, versions: Sequence[StoredVersion]) -> None:
        """The consumer's ``handle``: re-chunk each version (idempotent)."""
        latest: dict[tuple[str, str], StoredVersion] = {}
        for version in versions:
            if version.resource_type in INDEXED_TYPES:
                latest[(version.resource_type, version.resource_id)] = version
        if not latest:
            return
        replaced = {key: self._chunks(version) for key, version in latest.items()}
        every = [c for chunks in replaced.values() for c in chunks]
        vectors = self._embed(every)
        rows = [
            {
                "resource_type": c.resource_type,
                "resource_id": c.resource_id,
                "chunk_no": c.chunk_no,
                "tenant": c.tenant,
                "patient": c.patient,
                "text": c.text,
                "vector": to_bytes(vectors[n]) if vectors is not None else None,
            }
            for n, c in enumerate(every)
        ]
        with self._lock, self.db.begin() as conn:
            for resource_type in {key[0] for key in replaced}:
                ids = [key[1] for key in replaced if key[0] == resource_type]
                for start in range(0, len(ids), 500):
                    conn.execute(
                        delete(ai_chunk).where(
                            ai_chunk.c.resource_type == resource_type,
                            ai_chunk.c.resource_id.in_(ids[start : start + 500]),
                        )
                    )
            if rows:
                conn.execute(insert(ai_chunk), rows)
            self._generation = self._bump(conn)
            position = 0
            for (resource_type, resource_id), chunks in replaced.items():
                self.bm25.replace(resource_type, resource_id, chunks)
                if vectors is not None:
                    pairs = [(c, vectors[position + n]) for n, c in enumerate(chunks)]
                    self.vectors.replace(resource_type, resource_id, pairs)
                position += len(chunks)

    def _embed(self, chunks: list[Chunk]) -> Any:
        """The chunks' vectors, or None (no endpoint, or it failed: the chunks are indexed
        for lexical search only, and ``fhirhub replay`` adds their vectors later)."""
        if self.embedder is None or not chunks:
            return None
        try:
            return self.embedder.embed([c.text for c in chunks])
        except Exception as error:  # noqa: BLE001 - any failure of the endpoint
            log.warning("Embeddings unavailable, indexing lexically only: %s", error)
            return None

    def _chunks(self, version: StoredVersion) -> list[Chunk]:
        if version.deleted or version.content is None:
            return []
        resource = orjson.loads(version.content)

        def fetch_binary(reference: str) -> tuple[str, bytes] | None:
            try:
                with acting_as(system_for(version.tenant)):
                    binary = read(self.hub, "Binary", reference.split("/", 1)[1])
            except FhirError:
                return None
            return str(binary.get("contentType") or ""), decode_base64(str(binary.get("data", "")))

        return chunks_of(resource, version.tenant, size=self.chunk_chars, fetch_binary=fetch_binary)

    @staticmethod
    def _bump(conn: Any) -> int:
        current = conn.execute(
            select(ai_index_state.c.generation).where(ai_index_state.c.id == 1)
        ).scalar()
        if current is None:
            conn.execute(insert(ai_index_state).values(id=1, generation=1))
            return 1
        conn.execute(
            ai_index_state.update().where(ai_index_state.c.id == 1).values(generation=current + 1)
        )
        return int(current) + 1

    def clear(self) -> None:
        """The consumer's ``reset``: empty, before the log is replayed."""
        with self._lock, self.db.begin() as conn:
            conn.execute(delete(ai_chunk))
            self._generation = self._bump(conn)
            self.bm25.clear()
            self.vectors.clear()

    def _refresh(self, force: bool = False) -> None:
        """Reload from the table when another process changed it (module docstring)."""
        now = time.monotonic()
        if not force and now - self._checked < REFRESH_EVERY_S:
            return
        self._checked = now
        with self._lock, self.db.read() as conn:
            generation = conn.execute(
                select(ai_index_state.c.generation).where(ai_index_state.c.id == 1)
            ).scalar()
            generation = int(generation or 0)
            if generation == self._generation and not force:
                return
            by_resource: dict[tuple[str, str], list[tuple[Chunk, Any]]] = {}
            for row in conn.execute(select(ai_chunk).order_by(ai_chunk.c.chunk_no)):
                chunk = Chunk(
                    row.resource_type,
                    row.resource_id,
                    row.chunk_no,
                    row.tenant,
                    row.patient,
                    row.text,
                )
                by_resource.setdefault((row.resource_type, row.resource_id), []).append(
                    (chunk, from_bytes(row.vector) if row.vector is not None else None)
                )
            self.bm25.clear()
            self.vectors.clear()
            for (resource_type, resource_id), pairs in by_resource.items():
                self.bm25.replace(resource_type, resource_id, [c for c, _ in pairs])
                with_vectors = [(c, v) for c, v in pairs if v is not None]
                if with_vectors:
                    self.vectors.replace(resource_type, resource_id, with_vectors)
            self._generation = generation

    # -- searching ---------------------------------------------------------------------------
    def scopes_for(self, access: Access, patient: str | None) -> list[Scope]:
        """Where a caller's question may look: one patient and the tenant's shared
        documents, or (no patient) everything of the caller's tenant."""
        if access.patient is not None:
            patient = access.patient
        if patient is not None:
            return (
                [(access.tenant, patient), (access.tenant, None)]
                if access.tenant
                else [s for s in self.bm25.scopes_of_tenant(None) if s[1] in (patient, None)]
            )
        return self.bm25.scopes_of_tenant(access.tenant)

    def search(self, query: str, access: Access, patient: str | None, k: int) -> list[Source]:
        """The ``k`` best chunks the caller may read (run as the caller)."""
        self._refresh()
        scopes = self.scopes_for(access, patient)
        hits = self.bm25.search(query, scopes, k * 3)
        if self.embedder is not None:
            try:
                vector = self.embedder.embed([query])[0]
            except Exception as error:  # noqa: BLE001 - lexical results still answer
                log.warning("Query embedding failed, lexical results only: %s", error)
            else:
                hits = fuse(hits, self.vectors.search(vector, scopes, k * 3))
        visible: dict[str, bool] = {}
        sources: list[Source] = []
        with acting_as(access):
            for hit in hits:
                if hit.chunk.reference not in visible:
                    visible[hit.chunk.reference] = _readable(self.hub, hit)
                if visible[hit.chunk.reference]:
                    sources.append(_source(hit))
                if len(sources) == k:
                    break
        return sources


def _readable(hub: Hub, hit: Hit) -> bool:
    try:
        read(hub, hit.chunk.resource_type, hit.chunk.resource_id)
    except FhirError:
        return False
    return True


def _source(hit: Hit) -> Source:
    return Source(hit.chunk.reference, hit.chunk.chunk_no, hit.chunk.text, hit.score, hit.matched)


_indexes: HubLocal[DocumentIndex] = HubLocal("ai.index")


def index_of(hub: Hub) -> DocumentIndex:
    return _indexes.setdefault(hub, lambda: DocumentIndex(hub))
