"""Okapi BM25 over chunks, in memory, split by scope (tenant, patient) so a question about one
patient scores only that patient's chunks and the tenant's shared documents.

Lexical rather than embedding retrieval: no model has to be shipped or downloaded, the ranking
is explainable (which words matched) and a clinical record is full of exact terms (drug names,
lab names, dates) that BM25 matches well. :class:`Retriever` is the one interface a hospital
replaces to use its own embedding endpoint.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from .chunking import Chunk

K1 = 1.2
B = 0.75
_TOKEN = re.compile(r"\d{4}-\d{2}-\d{2}|[a-z0-9]+(?:\.\d+)?")
STOPWORDS = frozenset(
    """a an and are as at be by did do does for from had has have he her his how i in is it its
    me my of on or she that the their them they this to was were what when where which who why
    will with you your patient patients latest last recent most any show tell about""".split()
)

Scope = tuple[str | None, str | None]  # (tenant, patient); patient None = the tenant's shared


def tokens(text: str) -> list[str]:
    """Lower-cased words and numbers, dates whole and as year and year-month too, a plural
    ``s`` removed; stop words dropped."""
    found: list[str] = []
    for token in _TOKEN.findall(text.lower()):
        if token in STOPWORDS:
            continue
        if len(token) == 10 and token[4] == "-":
            found.extend((token, token[:4], token[:7]))
            continue
        if len(token) > 4 and token.endswith("s") and not token.endswith("ss"):
            token = token[:-1]
        found.append(token)
    return found


@dataclass
class Hit:
    chunk: Chunk
    score: float
    matched: tuple[str, ...]


class Retriever(Protocol):
    """What the assistant needs from an index (module docstring)."""

    def search(self, query: str, scopes: Iterable[Scope], k: int) -> list[Hit]: ...


@dataclass
class _Part:
    """The postings of one scope."""

    postings: dict[str, dict[int, int]] = field(default_factory=dict)
    chunks: dict[int, Chunk] = field(default_factory=dict)


class Bm25Index:
    """Thread-safe BM25 index of :class:`Chunk`, replaced per resource."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._parts: dict[Scope, _Part] = {}
        self._by_resource: dict[tuple[str, str], list[tuple[int, Scope, Counter[str]]]] = {}
        self._df: Counter[str] = Counter()
        self._lengths: dict[int, int] = {}
        self._total_length = 0
        self._next = 0

    def __len__(self) -> int:
        return len(self._lengths)

    def resources(self) -> int:
        """How many resources have chunks in the index."""
        return len(self._by_resource)

    def clear(self) -> None:
        with self._lock:
            self.__init__()  # type: ignore[misc]

    def replace(self, resource_type: str, resource_id: str, chunks: list[Chunk]) -> None:
        """The resource's chunks become ``chunks`` (none: it leaves the index)."""
        with self._lock:
            self._remove((resource_type, resource_id))
            entries = []
            for chunk in chunks:
                number = self._next
                self._next += 1
                counts = Counter(tokens(chunk.text))
                scope = (chunk.tenant, chunk.patient)
                part = self._parts.setdefault(scope, _Part())
                part.chunks[number] = chunk
                for term, count in counts.items():
                    part.postings.setdefault(term, {})[number] = count
                    self._df[term] += 1
                length = sum(counts.values())
                self._lengths[number] = length
                self._total_length += length
                entries.append((number, scope, counts))
            if entries:
                self._by_resource[(resource_type, resource_id)] = entries

    def _remove(self, key: tuple[str, str]) -> None:
        for number, scope, counts in self._by_resource.pop(key, []):
            part = self._parts[scope]
            part.chunks.pop(number, None)
            for term in counts:
                postings = part.postings.get(term)
                if postings is not None:
                    postings.pop(number, None)
                    if not postings:
                        del part.postings[term]
                self._df[term] -= 1
                if self._df[term] <= 0:
                    del self._df[term]
            self._total_length -= self._lengths.pop(number, 0)
            if not part.chunks:
                del self._parts[scope]

    def scopes_of_tenant(self, tenant: str | None) -> list[Scope]:
        with self._lock:
            return [s for s in self._parts if tenant is None or s[0] == tenant]

    def search(self, query: str, scopes: Iterable[Scope], k: int) -> list[Hit]:
        terms = list(dict.fromkeys(tokens(query)))
        with self._lock:
            count = len(self._lengths)
            if not terms or not count:
                return []
            average = self._total_length / count
            scores: dict[int, float] = {}
            matched: dict[int, list[str]] = {}
            chunks: dict[int, Chunk] = {}
            for scope in scopes:
                part = self._parts.get(scope)
                if part is None:
                    continue
                for term in terms:
                    postings = part.postings.get(term)
                    if not postings:
                        continue
                    df = self._df[term]
                    idf = math.log(1 + (count - df + 0.5) / (df + 0.5))
                    for number, tf in postings.items():
                        norm = K1 * (1 - B + B * self._lengths[number] / average)
                        scores[number] = scores.get(number, 0.0) + idf * tf * (K1 + 1) / (tf + norm)
                        matched.setdefault(number, []).append(term)
                        chunks[number] = part.chunks[number]
            best = sorted(scores, key=lambda n: (-scores[n], chunks[n].citation))[:k]
            return [Hit(chunks[n], round(scores[n], 4), tuple(matched[n])) for n in best]
