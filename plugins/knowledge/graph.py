"""The in-memory graph: nodes by key, adjacency both ways, aliases, and traversals.

Built from the index rows (``index.py``); immutable, so readers share it without locks.
Every query names the tenants whose edges it may use: the reference data (tenant ``""``) and
the caller's own edits; an unrestricted caller (``None``) sees all.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from fhirhub.plugins.knowledge.model import Edge, Node
from fhirhub.plugins.knowledge.vocabulary import PrefixSubsumption, Subsumption, name_key

#: The longest drug or condition name, in words, looked for inside a free-text name.
_MAX_NAME_WORDS = 4


@dataclass(frozen=True)
class Hop:
    """One step of a named traversal (a GraphDefinition ``link``): edges of ``kinds`` (None:
    any) in ``direction``, then the ``next`` hops from the nodes it reached."""

    kinds: frozenset[str] | None
    direction: str
    next: tuple[Hop, ...] = ()


@dataclass(frozen=True)
class Scope:
    """Which edges a query may use: ``tenants`` None for all, else these tenant codes."""

    tenants: frozenset[str] | None
    kinds: frozenset[str] | None = None

    def allows(self, edge: Edge) -> bool:
        return (self.tenants is None or edge.tenant in self.tenants) and (
            self.kinds is None or edge.kind in self.kinds
        )


def scope_for(tenant: str | None, kinds: Iterable[str] | None = None) -> Scope:
    """The reference data and ``tenant``'s own edits (everything for ``None``)."""
    return Scope(
        None if tenant is None else frozenset({"", tenant}),
        frozenset(kinds) if kinds else None,
    )


class Graph:
    def __init__(self, edges: Iterable[Edge], subsumption: Subsumption | None = None) -> None:
        self.subsumption = subsumption or PrefixSubsumption()
        self.nodes: dict[str, Node] = {}
        self.outgoing: dict[str, list[Edge]] = defaultdict(list)
        self.incoming: dict[str, list[Edge]] = defaultdict(list)
        self.aliases: dict[str, set[str]] = defaultdict(set)
        self.edges: list[Edge] = []
        #: Lookups remembered for this graph's life (``checks.medication_nodes``).
        self.memo: dict[bytes, frozenset[str]] = {}
        #: Edge resources as ``$graph`` returns them, by ``id(edge)`` (``operations.bundle``).
        self.resources: dict[int, dict[str, Any]] = {}
        seen: set[Node] = set()
        for edge in edges:
            self.edges.append(edge)
            for node in (edge.source, edge.target):
                if node in seen:  # the same node on many edges: its aliases once
                    continue
                seen.add(node)
                self.nodes.setdefault(node.key, node)
                for alias in node.aliases:
                    self.aliases[alias].add(node.key)
            self.outgoing[edge.source.key].append(edge)
            self.incoming[edge.target.key].append(edge)

    def __len__(self) -> int:
        return len(self.edges)

    # -- finding nodes -------------------------------------------------------------------

    def resolve(self, keys: Iterable[str], kinds: Collection[str] = ()) -> set[str]:
        """The nodes that ``SHORT|code`` or ``name|...`` keys name, broader codes included."""
        found: set[str] = set()
        for key in keys:
            for candidate in self.subsumption.ancestors(key):
                found.update(self.aliases.get(candidate, ()))
        if kinds:
            found = {k for k in found if self.nodes[k].kind in kinds}
        return found

    def resolve_text(self, text: str, kinds: Collection[str] = ()) -> set[str]:
        """Nodes named inside free text: ``"Warfarin Sodium 5 MG Oral Tablet"`` finds warfarin
        (every run of up to four words is looked up as a name)."""
        words = name_key(text).split()
        keys = [
            "name|" + " ".join(words[start:end])
            for start in range(len(words))
            for end in range(start + 1, min(len(words), start + _MAX_NAME_WORDS) + 1)
        ]
        found: set[str] = set()
        for key in keys:
            found.update(self.aliases.get(key, ()))
        if kinds:
            found = {k for k in found if self.nodes[k].kind in kinds}
        return found

    # -- walking -------------------------------------------------------------------------

    def neighbours(self, key: str, direction: str, scope: Scope) -> list[tuple[Edge, str]]:
        pairs: list[tuple[Edge, str]] = []
        if direction in ("out", "both"):
            pairs += [(e, e.target.key) for e in self.outgoing.get(key, ()) if scope.allows(e)]
        if direction in ("in", "both"):
            pairs += [(e, e.source.key) for e in self.incoming.get(key, ()) if scope.allows(e)]
        return pairs

    def traverse(
        self, starts: Iterable[str], direction: str, depth: int, limit: int, scope: Scope
    ) -> tuple[list[Node], list[Edge], bool]:
        """Breadth first from ``starts`` up to ``depth`` hops; stops at ``limit`` edges.
        Cycles are harmless: a node is expanded once. Returns nodes, edges, truncated."""
        seen = {key: 0 for key in starts}
        queue = deque(seen)
        edges: dict[tuple[str, str, int], Edge] = {}
        truncated = False
        while queue:
            key = queue.popleft()
            if seen[key] >= depth:
                continue
            for edge, other in self.neighbours(key, direction, scope):
                ident = (edge.resource_type, edge.resource_id, id(edge))
                if ident not in edges:
                    if len(edges) >= limit:
                        truncated = True
                        break
                    edges[ident] = edge
                if other not in seen:
                    seen[other] = seen[key] + 1
                    queue.append(other)
            if truncated:
                break
        used = set(seen) & (
            {e.source.key for e in edges.values()}
            | {e.target.key for e in edges.values()}
            | set(starts)
        )
        return (
            [self.nodes[k] for k in seen if k in used and k in self.nodes],
            list(edges.values()),
            truncated,
        )

    def walk(
        self, starts: Iterable[str], hops: Iterable[Hop], limit: int, scope: Scope
    ) -> tuple[list[Node], list[Edge], bool]:
        """Follow a named traversal: each hop from the nodes the previous one reached."""
        edges: dict[int, Edge] = {}
        origin = set(starts)
        seen: dict[str, None] = dict.fromkeys(origin)
        truncated = False

        def step(frontier: set[str], hop: Hop) -> None:
            nonlocal truncated
            reached: set[str] = set()
            for key in frontier:
                for edge, other in self.neighbours(key, hop.direction, scope):
                    if hop.kinds is not None and edge.kind not in hop.kinds:
                        continue
                    if id(edge) not in edges:
                        if len(edges) >= limit:
                            truncated = True
                            return
                        edges[id(edge)] = edge
                    reached.add(other)
                    seen.setdefault(other)
            for child in hop.next:
                if reached and not truncated:
                    step(reached, child)

        for hop in hops:
            if not truncated:
                step(origin, hop)
        return [self.nodes[k] for k in seen if k in self.nodes], list(edges.values()), truncated

    def shortest_path(
        self, starts: Iterable[str], goals: Collection[str], scope: Scope, max_depth: int = 6
    ) -> list[Edge] | None:
        """The fewest edges (either direction) from any start to any goal; None if none."""
        previous: dict[str, tuple[str, Edge] | None] = {key: None for key in starts}
        queue = deque((key, 0) for key in previous)
        while queue:
            key, hops = queue.popleft()
            if key in goals:
                path: list[Edge] = []
                while (step := previous[key]) is not None:
                    key, edge = step
                    path.append(edge)
                return path[::-1]
            if hops >= max_depth:
                continue
            for edge, other in self.neighbours(key, "both", scope):
                if other not in previous:
                    previous[other] = (key, edge)
                    queue.append((other, hops + 1))
        return None
