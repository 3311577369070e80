"""``$graph`` (traversal and shortest path) and ``Patient/{id}/$knowledge``.

Both read the graph as the caller: the reference data and the caller's tenant's own edits.
``$knowledge`` reads the patient's record with the caller's access, so it shows only what the
caller may see of that patient.
"""

from __future__ import annotations

from typing import Any

from fhirhub.plugins.knowledge.checks import Finding, check_order
from fhirhub.plugins.knowledge.context import read_context
from fhirhub.plugins.knowledge.fhir_codec import resource_for
from fhirhub.plugins.knowledge.graph import Graph, Hop, scope_for
from fhirhub.plugins.knowledge.model import Edge, Node
from fhirhub.plugins.knowledge.service import service_of
from fhirhub.plugins.knowledge.vocabulary import EDGE_KINDS, SYSTEMS, code_key, name_key
from fhirhub.sdk import (
    Operation,
    OperationCall,
    current_access,
    invalid,
    read,
    snapshot,
)

MAX_DEPTH = 4
MAX_LIMIT = 2000
KNOWLEDGE_TYPE = "MedicinalProductIndication"  # the scope a caller needs to read the graph


def _one(call: OperationCall, name: str, default: str = "") -> str:
    values = call.parameters.get(name) or []
    return str(values[0]) if values else default


def _int(call: OperationCall, name: str, default: int, low: int, high: int) -> int:
    raw = _one(call, name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise invalid(f"{name} must be an integer, not {raw!r}") from None
    if not low <= value <= high:
        raise invalid(f"{name} must be between {low} and {high}")
    return value


def start_keys(value: str) -> list[str]:
    """``ICD10CM|I10``, ``http://hl7.org/fhir/sid/icd-10-cm|I10`` or a plain name."""
    if not value:
        raise invalid("start is required: SYSTEM|code (e.g. ICD10CM|I10) or a name")
    system, bar, code = value.partition("|")
    if not bar:
        return [f"name|{name_key(value)}"]
    url = SYSTEMS.get(system.upper(), system)
    key = code_key(url, code)
    if key is None:
        raise invalid(
            f"Unknown code system {system!r}; use one of {', '.join(SYSTEMS)} or their URLs"
        )
    return [key]


def _scope_tenant() -> str | None:
    access = current_access()
    access.require("r", KNOWLEDGE_TYPE)
    return access.tenant


def graph_operation(call: OperationCall) -> dict[str, Any]:
    tenant = _scope_tenant()
    kinds = [k for v in call.parameters.get("edge") or [] for k in str(v).split(",") if k]
    unknown = [k for k in kinds if k not in EDGE_KINDS]
    if unknown:
        raise invalid(f"Unknown edge kind {unknown[0]!r}; expected {', '.join(EDGE_KINDS)}")
    direction = _one(call, "direction", "both")
    if direction not in ("in", "out", "both"):
        raise invalid("direction must be in, out or both")
    depth = _int(call, "depth", 1, 0, MAX_DEPTH)
    limit = _int(call, "limit", 200, 1, MAX_LIMIT)
    graph = service_of(call.hub).index.graph()
    scope = scope_for(tenant, kinds or None)
    starts = graph.resolve(start_keys(_one(call, "start")))
    if _one(call, "graph"):
        hops = hops_of(_graph_definition(call))
        nodes, edges, truncated = graph.walk(starts, hops, limit, scope)
    elif _one(call, "target"):
        goals = graph.resolve(start_keys(_one(call, "target")))
        path = graph.shortest_path(starts, goals, scope) if starts and goals else None
        edges = path or []
        nodes = _nodes_of(graph, edges, starts if path is None else set())
        truncated = False
    else:
        nodes, edges, truncated = graph.traverse(starts, direction, depth, limit, scope)
    if _one(call, "view") == "compact":
        return compact(nodes, edges, starts, truncated)
    return bundle(graph, edges, call.base_url)


def _graph_definition(call: OperationCall) -> dict[str, Any]:
    reference = _one(call, "graph").removeprefix("GraphDefinition/")
    return read(call.hub, "GraphDefinition", reference)


def hops_of(definition: dict[str, Any]) -> tuple[Hop, ...]:
    """A GraphDefinition's links as hops (docs/knowledge.md, Named traversals): ``link.path``
    is ``KIND``, ``KIND.in`` or ``KIND.out`` (``*`` for any kind); ``link.target.link`` are the
    next hops."""

    def hops(links: Any, depth: int) -> tuple[Hop, ...]:
        if depth > MAX_DEPTH:
            raise invalid(f"A named traversal may nest at most {MAX_DEPTH} links deep")
        found = []
        for link in links or ():
            path = str(link.get("path") or "")
            kind, _, direction = path.partition(".")
            if kind != "*" and kind not in EDGE_KINDS:
                raise invalid(
                    f"GraphDefinition link path {path!r}: expected KIND, KIND.in or KIND.out "
                    f"with KIND one of {', '.join(EDGE_KINDS)} or *"
                )
            if direction not in ("", "in", "out"):
                raise invalid(f"GraphDefinition link path {path!r}: direction must be in or out")
            children = [c for t in link.get("target") or () for c in t.get("link") or ()]
            found.append(
                Hop(
                    None if kind == "*" else frozenset({kind}),
                    direction or "both",
                    hops(children, depth + 1),
                )
            )
        return tuple(found)

    result = hops(definition.get("link"), 1)
    if not result:
        raise invalid("The GraphDefinition has no link to follow")
    return result


def _nodes_of(graph: Graph, edges: list[Edge], extra: set[str]) -> list[Node]:
    keys = dict.fromkeys([*(k for e in edges for k in (e.source.key, e.target.key)), *extra])
    return [graph.nodes[k] for k in keys if k in graph.nodes]


def compact(
    nodes: list[Node], edges: list[Edge], starts: set[str] | frozenset[str], truncated: bool
) -> dict[str, Any]:
    """The JSON the UI draws: nodes and edges by key (not a FHIR resource)."""
    return {
        "nodes": [{**n.compact, "start": n.key in starts} for n in nodes],
        "edges": [e.compact for e in edges],
        "truncated": truncated,
    }


def bundle(graph: Graph, edges: list[Edge], base_url: str) -> dict[str, Any]:
    """The edges as their R4 resources (rebuilt from the index, remembered per graph), in a
    collection Bundle."""
    entries = []
    for edge in edges:
        resource = graph.resources.get(id(edge))
        if resource is None:
            resource = graph.resources[id(edge)] = {**resource_for(edge), "id": edge.resource_id}
        entries.append({"fullUrl": f"{base_url}/{edge.reference}", "resource": resource})
    return {"resourceType": "Bundle", "type": "collection", "total": len(entries), "entry": entries}


def knowledge_operation(call: OperationCall) -> dict[str, Any]:
    tenant = _scope_tenant()
    assert call.resource_id is not None
    read(call.hub, "Patient", call.resource_id)  # 404 unless the caller may see the patient
    graph = service_of(call.hub).index.graph()
    scope = scope_for(tenant)
    patient = f"Patient/{call.resource_id}"
    with snapshot(call.hub) as tx:
        context = read_context(graph, patient, tx.search, tx.read)
    findings: dict[tuple[str, ...], Finding] = {}
    for medication in context.medications:
        for finding in check_order(graph, scope, medication, context):
            findings.setdefault((finding.edge.reference, *sorted(finding.implicated)), finding)
    items = [*context.medications, *context.conditions, *context.allergies]
    owner = {node: item for item in items for node in item.nodes}
    treats, explains, edges = [], [], list(f.edge for f in findings.values())
    for medication in context.medications:
        for node in medication.nodes:
            for edge, other in graph.neighbours(node, "out", scope):
                target = owner.get(other)
                if target is None or target is medication:
                    continue
                if edge.kind == "TREATS":
                    treats.append((medication, target, edge))
                    edges.append(edge)
                elif edge.kind == "CAUSES":
                    explains.append((medication, target, edge))
                    edges.append(edge)
    if _one(call, "view") == "compact":
        nodes = _nodes_of(graph, edges, {n for item in items for n in item.nodes})
        return {
            **compact(nodes, edges, frozenset(), False),
            "record": [
                {"reference": i.reference, "label": i.label, "nodes": sorted(i.nodes)}
                for i in items
            ],
            "findings": [
                {
                    "check": f.check,
                    "severity": f.severity,
                    "summary": f.summary,
                    "detail": f.detail,
                    "edge": f.edge.reference,
                    "implicated": list(f.implicated),
                }
                for f in findings.values()
            ],
            "treats": [[m.reference, t.reference, e.reference] for m, t, e in treats],
            "explains": [[m.reference, t.reference, e.reference] for m, t, e in explains],
        }
    return parameters(findings.values(), treats, explains)


def parameters(findings: Any, treats: list[Any], explains: list[Any]) -> dict[str, Any]:
    """``$knowledge``'s FHIR answer: a Parameters with one repeating parameter per relation."""
    out: list[dict[str, Any]] = []
    for f in findings:
        out.append(
            {
                "name": "finding",
                "part": [
                    {"name": "check", "valueCode": f.check},
                    {"name": "severity", "valueCode": f.severity},
                    {"name": "summary", "valueString": f.summary},
                    {"name": "edge", "valueString": f.edge.reference},
                    *(
                        {"name": "implicated", "valueReference": {"reference": r}}
                        for r in f.implicated
                    ),
                ],
            }
        )
    for name, rows in (("treats", treats), ("explains", explains)):
        for medication, target, edge in rows:
            out.append(
                {
                    "name": name,
                    "part": [
                        {
                            "name": "medication",
                            "valueReference": {"reference": medication.reference},
                        },
                        {"name": "condition", "valueReference": {"reference": target.reference}},
                        {"name": "edge", "valueString": edge.reference},
                    ],
                }
            )
    return {"resourceType": "Parameters", "parameter": out}


def operations() -> list[Operation]:
    return [
        Operation(
            "graph",
            graph_operation,
            system=True,
            description="Traverse the clinical knowledge graph from a code (start, edge, "
            "direction, depth, limit), along a named GraphDefinition (graph), or the shortest "
            "path to target; view=compact for JSON",
        ),
        Operation(
            "knowledge",
            knowledge_operation,
            instance=True,
            resource_types=("Patient",),
            description="The patient's drugs, conditions and allergies placed on the knowledge "
            "graph: what treats what, possible side effects, contraindications",
        ),
    ]
