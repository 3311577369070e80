"""Order checks: a drug against the patient's other drugs, conditions and allergies.

Pure functions over a :class:`Graph` and a :class:`PatientContext`, shared by the check on
MedicationRequest writes (``orders.py``), the CDS Hooks service (``cds_hooks.py``) and
``Patient/$knowledge``. A drug the graph does not know raises nothing: the graph's gaps are
gaps, not safety (docs/knowledge.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from fhirhub.plugins.knowledge.graph import Graph, Scope
from fhirhub.plugins.knowledge.model import Edge
from fhirhub.plugins.knowledge.vocabulary import SEVERITY_RANK, code_key, name_key

MEDICATION = ("Medication",)
MEMO_LIMIT = 100_000
CONDITION_KINDS = ("Diagnosis", "Symptom", "SideEffect")


@dataclass(frozen=True)
class Item:
    """One thing of the patient's record: its reference, label and graph nodes."""

    reference: str
    label: str
    nodes: frozenset[str]


@dataclass
class PatientContext:
    patient: str  # "Patient/{id}"
    medications: list[Item] = field(default_factory=list)
    conditions: list[Item] = field(default_factory=list)
    allergies: list[Item] = field(default_factory=list)


@dataclass(frozen=True)
class Finding:
    check: str  # drug-interaction | drug-condition | drug-allergy
    severity: str
    edge: Edge
    implicated: tuple[str, ...]
    summary: str

    @property
    def detail(self) -> str:
        parts = [self.edge.attributes.get("effect", ""), self.edge.text]
        return " ".join(p for p in parts if p)

    def key(self, order_reference: str) -> str:
        """Stable for one order and one cause: a rewrite of the order raises it once."""
        return "|".join((order_reference, self.edge.reference, *sorted(self.implicated)))


def concept_keys(concept: dict[str, Any] | None) -> set[str]:
    """A CodeableConcept's codes as graph keys, and its text and displays as names."""
    keys: set[str] = set()
    if not isinstance(concept, dict):
        return keys
    for coding in concept.get("coding") or ():
        if not isinstance(coding, dict):
            continue
        key = code_key(str(coding.get("system", "")), str(coding.get("code", "")))
        if key:
            keys.add(key)
        if coding.get("display"):
            keys.add("name|" + name_key(str(coding["display"])))
    if concept.get("text"):
        keys.add("name|" + name_key(str(concept["text"])))
    return keys


def medication_nodes(graph: Graph, concept: dict[str, Any] | None) -> frozenset[str]:
    """Drug nodes of a medication concept: by code, by name, and by the drug names inside its
    text (an RxNorm clinical drug such as "Warfarin Sodium 5 MG Oral Tablet" names warfarin).
    Remembered per graph: a patient's drugs come back at every order."""
    memo_key = orjson.dumps(concept, option=orjson.OPT_SORT_KEYS)
    if (known := graph.memo.get(memo_key)) is not None:
        return known
    found = graph.resolve(concept_keys(concept), MEDICATION)
    if isinstance(concept, dict):
        texts = [concept.get("text") or ""] + [
            c.get("display") or "" for c in concept.get("coding") or () if isinstance(c, dict)
        ]
        for text in texts:
            if text:
                found |= graph.resolve_text(text, MEDICATION)
    if len(graph.memo) > MEMO_LIMIT:
        graph.memo.clear()
    graph.memo[memo_key] = frozenset(found)
    return graph.memo[memo_key]


def condition_nodes(graph: Graph, concept: dict[str, Any] | None) -> frozenset[str]:
    return frozenset(graph.resolve(concept_keys(concept), CONDITION_KINDS))


@dataclass
class OrderEdges:
    """The edges that could fire for one ordered drug, by the node at their other end."""

    interacting: dict[str, list[Edge]] = field(default_factory=dict)
    contraindicating: dict[str, list[Edge]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.interacting or self.contraindicating)


def order_edges(graph: Graph, scope: Scope, order: Item) -> OrderEdges:
    found = OrderEdges()
    for key in order.nodes:
        for edge, other in graph.neighbours(key, "both", scope):
            if edge.kind != "CONTRAINDICATED_FOR":
                continue
            if edge.source.kind == "Medication" and edge.target.kind == "Medication":
                found.interacting.setdefault(other, []).append(edge)
            elif edge.target.key == key:
                found.contraindicating.setdefault(other, []).append(edge)
    return found


def check_order(
    graph: Graph,
    scope: Scope,
    order: Item,
    context: PatientContext,
    edges: OrderEdges | None = None,
) -> list[Finding]:
    """Every interaction, contraindicating condition and allergy for one ordered drug."""
    findings: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    edges = edges if edges is not None else order_edges(graph, scope, order)
    interacting, contraindicating = edges.interacting, edges.contraindicating

    def add(check: str, edge: Edge, item: Item, summary: str) -> None:
        # One finding per cause: a condition contraindicating the drug under two of its
        # names (the drug and its class) is one warning.
        cause = edge.reference if check == "drug-interaction" else edge.source.key
        if (cause, item.reference) in seen:
            return
        seen.add((cause, item.reference))
        findings.append(
            Finding(
                check, edge.severity or "moderate", edge, (order.reference, item.reference), summary
            )
        )

    for medication in context.medications:
        if medication.reference == order.reference:
            continue
        for node in medication.nodes:
            for edge in interacting.get(node, ()):
                add(
                    "drug-interaction",
                    edge,
                    medication,
                    f"{order.label} interacts with {medication.label} "
                    f"({edge.source.label} / {edge.target.label})",
                )
    for check, items in (
        ("drug-condition", context.conditions),
        ("drug-allergy", context.allergies),
    ):
        for item in items:
            for node in item.nodes:
                for edge in contraindicating.get(node, ()):
                    add(
                        check,
                        edge,
                        item,
                        f"{order.label} is contraindicated with {item.label} ({edge.source.label})",
                    )
    findings.sort(key=lambda f: -SEVERITY_RANK.get(f.severity, 0))
    return findings


def at_least(findings: Iterable[Finding], severity: str) -> list[Finding]:
    floor = SEVERITY_RANK.get(severity, 99)
    return [f for f in findings if SEVERITY_RANK.get(f.severity, 0) >= floor]
