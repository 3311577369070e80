"""Edges as R4 resources, and back.

| edge | resource | source node | target node |
|---|---|---|---|
| Medication TREATS Diagnosis | MedicinalProductIndication | `subject` (a contained Medication) | `diseaseSymptomProcedure` |
| Diagnosis/Symptom CONTRAINDICATED_FOR Medication | MedicinalProductContraindication | `disease` | `subject` |
| Medication CONTRAINDICATED_FOR Medication | MedicinalProductInteraction | `subject` | `interactant.itemCodeableConcept` |
| Medication CAUSES SideEffect | MedicinalProductUndesirableEffect | `subject` | `symptomConditionEffect` |
| anything else (HAS_SYMPTOM, RISK_FACTOR_FOR, COMORBID_WITH, Treatment TREATS ...) | Basic (profile in docs/knowledge.md) | extension `from` | extension `to` |

Every resource carries the ``knowledge-edge`` extension: kind, severity, evidence, source and
data version. Parsing is the index's only way in, so an edge written with an ordinary FHIR
write is indexed exactly like a loaded one.
"""

from __future__ import annotations

from typing import Any

from fhirhub.plugins.knowledge.model import Edge, Node
from fhirhub.plugins.knowledge.vocabulary import (
    ALIAS_EXTENSION,
    BASIC_CODE_SYSTEM,
    EDGE_EXTENSION,
    EDGE_KINDS,
    NODE_KINDS,
    SEVERITIES,
    SHORT_OF,
)
from fhirhub.sdk import FhirError

EDGE_TYPES = frozenset(
    {
        "MedicinalProductIndication",
        "MedicinalProductContraindication",
        "MedicinalProductInteraction",
        "MedicinalProductUndesirableEffect",
        "Basic",
    }
)
KNOWN_SYSTEMS = frozenset(SHORT_OF)
_DRUG = "#drug"


class EdgeError(FhirError):
    """A knowledge resource that does not state a valid edge (422)."""

    def __init__(self, text: str) -> None:
        super().__init__(422, text, code="processing")


def resource_for(edge: Edge) -> dict[str, Any]:
    """The R4 resource stating ``edge`` (R4 gives these types no identifier: a loader keys
    them by id)."""
    meta = _meta_extension(edge)
    resource: dict[str, Any]
    source, target, kind = edge.source, edge.target, edge.kind
    if kind == "TREATS" and source.kind == "Medication":
        resource = _with_drug("MedicinalProductIndication", source)
        resource["diseaseSymptomProcedure"] = target.concept()
        if edge.attributes.get("category"):
            resource["intendedEffect"] = {"text": edge.attributes["category"]}
    elif kind == "CONTRAINDICATED_FOR" and source.kind == target.kind == "Medication":
        resource = _with_drug("MedicinalProductInteraction", source)
        resource["interactant"] = [{"itemCodeableConcept": target.concept()}]
        if edge.text:
            resource["description"] = edge.text
        if edge.attributes.get("effect"):
            resource["effect"] = {"text": edge.attributes["effect"]}
        if edge.management:
            resource["management"] = {"text": edge.management}
    elif kind == "CONTRAINDICATED_FOR" and target.kind == "Medication":
        resource = _with_drug("MedicinalProductContraindication", target)
        resource["disease"] = source.concept()
        meta["extension"].append(_node_kind("fromKind", source.kind))
    elif kind == "CAUSES" and source.kind == "Medication":
        resource = _with_drug("MedicinalProductUndesirableEffect", source)
        resource["symptomConditionEffect"] = target.concept()
        if edge.attributes.get("frequency"):
            resource["frequencyOfOccurrence"] = {"text": edge.attributes["frequency"]}
    else:
        resource = {
            "resourceType": "Basic",
            "code": {"coding": [{"system": BASIC_CODE_SYSTEM, "code": "knowledge-edge"}]},
        }
        meta["extension"] += [
            {"url": "from", "valueCodeableConcept": source.concept()},
            _node_kind("fromKind", source.kind),
            {"url": "to", "valueCodeableConcept": target.concept()},
            _node_kind("toKind", target.kind),
        ]
    if edge.text and resource["resourceType"] != "MedicinalProductInteraction":
        meta["extension"].append({"url": "text", "valueString": edge.text})
    resource.setdefault("extension", []).append(meta)
    return resource


def edges_of(resource: dict[str, Any], resource_id: str, tenant: str = "") -> list[Edge]:
    """The edges a knowledge resource states; [] for one without the ``knowledge-edge``
    extension (a ``MedicinalProduct*`` or ``Basic`` used for something else is not part of the
    graph). Raises :class:`EdgeError` for one that claims to be an edge but is malformed."""
    resource_type = resource.get("resourceType", "")
    meta = _find_meta(resource)
    if meta is None:
        return []
    values = _values(meta)
    kind = str(values.get("kind", ""))
    if kind not in EDGE_KINDS:
        raise EdgeError(f"Unknown edge kind {kind!r}; expected one of {', '.join(EDGE_KINDS)}")
    severity = str(values.get("severity", ""))
    if severity and severity not in SEVERITIES:
        raise EdgeError(f"Unknown severity {severity!r}; expected one of {', '.join(SEVERITIES)}")
    common = {
        "resource_type": resource_type,
        "resource_id": resource_id,
        "tenant": tenant,
        "severity": severity,
        "evidence": str(values.get("evidence", "")),
        "origin": str(values.get("source", "")),
        "data_version": str(values.get("dataVersion", "")),
        "text": str(values.get("text", "")),
    }
    pairs: list[tuple[Node, Node, dict[str, Any]]] = []
    if resource_type == "MedicinalProductIndication":
        drug = _drug(resource)
        target = _node("Diagnosis", resource.get("diseaseSymptomProcedure"))
        effect = (resource.get("intendedEffect") or {}).get("text")
        pairs.append((drug, target, {"attributes": {"category": effect} if effect else {}}))
    elif resource_type == "MedicinalProductInteraction":
        drug = _drug(resource)
        extra = {
            "text": resource.get("description", ""),
            "management": (resource.get("management") or {}).get("text", ""),
            "attributes": {"effect": e}
            if (e := (resource.get("effect") or {}).get("text"))
            else {},
        }
        for interactant in resource.get("interactant") or ():
            pairs.append((drug, _node("Medication", interactant.get("itemCodeableConcept")), extra))
    elif resource_type == "MedicinalProductContraindication":
        source = _node(str(values.get("fromKind") or "Diagnosis"), resource.get("disease"))
        pairs.append((source, _drug(resource), {}))
    elif resource_type == "MedicinalProductUndesirableEffect":
        frequency = (resource.get("frequencyOfOccurrence") or {}).get("text")
        target = _node("SideEffect", resource.get("symptomConditionEffect"))
        attributes = {"frequency": frequency} if frequency else {}
        pairs.append((_drug(resource), target, {"attributes": attributes}))
    elif resource_type == "Basic":
        source = _node(str(values.get("fromKind", "")), values.get("from"))
        target = _node(str(values.get("toKind", "")), values.get("to"))
        pairs.append((source, target, {}))
    else:
        raise EdgeError(f"{resource_type} cannot state a knowledge edge")
    edges = []
    for source, target, extra in pairs:
        if source.key == target.key:
            raise EdgeError(f"An edge from {source.label!r} to itself is a cycle of one: refused")
        edges.append(Edge(kind=kind, source=source, target=target, **{**common, **extra}))
    if not edges:
        raise EdgeError(f"{resource_type} names no target for its {kind} edge")
    return edges


def _meta_extension(edge: Edge) -> dict[str, Any]:
    values = [
        ("kind", "valueCode", edge.kind),
        ("severity", "valueCode", edge.severity),
        ("evidence", "valueString", edge.evidence),
        ("source", "valueString", edge.origin),
        ("dataVersion", "valueString", edge.data_version),
    ]
    return {
        "url": EDGE_EXTENSION,
        "extension": [{"url": url, kind: value} for url, kind, value in values if value],
    }


def _node_kind(url: str, kind: str) -> dict[str, Any]:
    return {"url": url, "valueCode": kind}


def _with_drug(resource_type: str, drug: Node) -> dict[str, Any]:
    return {
        "resourceType": resource_type,
        "contained": [{"resourceType": "Medication", "id": "drug", "code": drug.concept()}],
        "subject": [{"reference": _DRUG}],
    }


def _find_meta(resource: dict[str, Any]) -> dict[str, Any] | None:
    for extension in resource.get("extension") or ():
        if isinstance(extension, dict) and extension.get("url") == EDGE_EXTENSION:
            return extension
    return None


def _values(extension: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in extension.get("extension") or ():
        for name, value in item.items():
            if name.startswith("value"):
                found[item.get("url", "")] = value
    return found


def _drug(resource: dict[str, Any]) -> Node:
    subjects = resource.get("subject") or []
    reference = subjects[0].get("reference") if subjects else None
    for contained in resource.get("contained") or ():
        if f"#{contained.get('id')}" == reference and contained.get("resourceType") in (
            "Medication",
            "MedicinalProduct",
        ):
            concept = contained.get("code") or {
                "text": ((contained.get("name") or [{}])[0]).get("productName", "")
            }
            return _node("Medication", concept)
    raise EdgeError(
        f"{resource.get('resourceType')}.subject must reference a contained Medication "
        "whose code names the drug"
    )


def _node(kind: str, concept: Any) -> Node:
    if kind not in NODE_KINDS:
        raise EdgeError(f"Unknown node kind {kind!r}; expected one of {', '.join(NODE_KINDS)}")
    if not isinstance(concept, dict):
        raise EdgeError(f"A {kind} node needs a CodeableConcept")
    unknown = [
        c.get("system")
        for c in concept.get("coding") or ()
        if isinstance(c, dict) and c.get("system") not in KNOWN_SYSTEMS
    ]
    if unknown:
        raise EdgeError(
            f"Unknown code system {unknown[0]!r} for a {kind} node; the graph knows "
            + ", ".join(sorted(KNOWN_SYSTEMS))
        )
    aliases = [
        e["valueString"]
        for e in concept.get("extension") or ()
        if isinstance(e, dict) and e.get("url") == ALIAS_EXTENSION and e.get("valueString")
    ]
    node = Node.from_concept(kind, concept, aliases)
    if not node.label:
        raise EdgeError(f"A {kind} node needs a code or a text")
    return node
