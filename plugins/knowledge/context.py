"""The patient's record as the checks see it: active drugs, conditions and allergies.

Read through any ``search``/``read`` pair: a writer's transaction (the order check sees the
unit's own writes), a snapshot (``$knowledge``), or a CDS Hooks request's prefetch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from fhirhub.plugins.knowledge.checks import (
    Item,
    PatientContext,
    condition_nodes,
    medication_nodes,
)
from fhirhub.plugins.knowledge.graph import Graph
from fhirhub.sdk import FhirError

Search = Callable[[str, dict[str, Any]], list[dict[str, Any]]]
#: A search that also takes ``None``: system-level, several types at once (``_type``).
AnySearch = Callable[[str | None, dict[str, Any]], list[dict[str, Any]]]
Read = Callable[[str, str], dict[str, Any]]

ACTIVE_ORDER = frozenset({"active", "on-hold", "draft"})
ACTIVE_STATEMENT = frozenset({"active", "intended"})
ACTIVE_CLINICAL = frozenset({"active", "recurrence", "relapse"})
COUNT = "200"


def medication_concept(resource: dict[str, Any], read: Read | None) -> dict[str, Any] | None:
    """``medicationCodeableConcept``, or the code of the referenced (or contained) Medication."""
    if isinstance(resource.get("medicationCodeableConcept"), dict):
        return resource["medicationCodeableConcept"]  # type: ignore[no-any-return]
    reference = (resource.get("medicationReference") or {}).get("reference", "")
    if reference.startswith("#"):
        for contained in resource.get("contained") or ():
            if f"#{contained.get('id')}" == reference:
                return contained.get("code")  # type: ignore[no-any-return]
    if reference.startswith("Medication/") and read is not None:
        try:
            medication = read("Medication", reference.split("/", 1)[1])
            return medication.get("code")
        except FhirError:
            return None
    return None


def label_of(concept: dict[str, Any] | None, fallback: str) -> str:
    if not isinstance(concept, dict):
        return fallback
    if concept.get("text"):
        return str(concept["text"])
    for coding in concept.get("coding") or ():
        if isinstance(coding, dict) and coding.get("display"):
            return str(coding["display"])
    return fallback


def order_item(graph: Graph, resource: dict[str, Any], reference: str, read: Read | None) -> Item:
    concept = medication_concept(resource, read)
    return Item(reference, label_of(concept, reference), medication_nodes(graph, concept))


def _status(resource: dict[str, Any], element: str) -> str:
    value = resource.get(element)
    if isinstance(value, str):
        return value
    for coding in (value or {}).get("coding") or ():
        return str(coding.get("code", ""))
    return "active"  # no clinical status stated: treat as current


def context_from(
    graph: Graph,
    patient: str,
    medication_requests: Iterable[dict[str, Any]],
    medication_statements: Iterable[dict[str, Any]],
    conditions: Iterable[dict[str, Any]],
    allergies: Iterable[dict[str, Any]],
    read: Read | None = None,
) -> PatientContext:
    context = PatientContext(patient)
    for resource in medication_requests:
        if resource.get("status") in ACTIVE_ORDER:
            ref = f"MedicationRequest/{resource.get('id')}"
            context.medications.append(order_item(graph, resource, ref, read))
    for resource in medication_statements:
        if resource.get("status") in ACTIVE_STATEMENT:
            ref = f"MedicationStatement/{resource.get('id')}"
            context.medications.append(order_item(graph, resource, ref, read))
    for resource in conditions:
        if _status(resource, "clinicalStatus") in ACTIVE_CLINICAL:
            concept = resource.get("code")
            ref = f"Condition/{resource.get('id')}"
            context.conditions.append(
                Item(ref, label_of(concept, ref), condition_nodes(graph, concept))
            )
    for resource in allergies:
        if _status(resource, "clinicalStatus") in ACTIVE_CLINICAL:
            concept = resource.get("code")
            ref = f"AllergyIntolerance/{resource.get('id')}"
            context.allergies.append(
                Item(ref, label_of(concept, ref), condition_nodes(graph, concept))
            )
    return context


def read_context(
    graph: Graph,
    patient: str,
    search: Search,
    read: Read | None,
    *,
    medications: bool = True,
    conditions: bool = True,
) -> PatientContext:
    """The patient's context through ``search`` (one query per type); an order check that
    has no interaction (or no contraindication) to look for skips those types."""
    params = {"patient": patient, "_count": COUNT, "_total": "none"}  # no COUNT query
    none: list[dict[str, Any]] = []
    return context_from(
        graph,
        patient,
        # By status: a long history of completed orders must not push active ones off the page.
        search("MedicationRequest", {**params, "status": ",".join(sorted(ACTIVE_ORDER))})
        if medications
        else none,
        search("MedicationStatement", {**params, "status": ",".join(sorted(ACTIVE_STATEMENT))})
        if medications
        else none,
        search("Condition", params) if conditions else none,
        search("AllergyIntolerance", params) if conditions else none,
        read,
    )


def read_context_at_once(
    graph: Graph,
    patient: str,
    search: AnySearch,
    read: Read | None,
    *,
    medications: bool = True,
    conditions: bool = True,
    page: int = 1000,
) -> PatientContext:
    """The same context as :func:`read_context`, in one system-level query for every type
    the check needs (a query's fixed cost is most of an order check's cost): the patient's
    resources of those types unfiltered, their status checked here. A patient with ``page``
    or more of them (a full page: some may be missing) is read type by type, by status.

    For callers that may search every type (the order check acts as the system): a
    system-level search leaves out, rather than refuses, the types a caller may not search.
    """
    types = (["MedicationRequest", "MedicationStatement"] if medications else []) + (
        ["Condition", "AllergyIntolerance"] if conditions else []
    )
    if not types:
        return PatientContext(patient)
    found = search(
        None,
        {"_type": ",".join(types), "patient": patient, "_count": str(page), "_total": "none"},
    )
    if len(found) >= page:
        return read_context(
            graph, patient, search, read, medications=medications, conditions=conditions
        )
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for resource in found:
        by_type[str(resource.get("resourceType"))].append(resource)
    return context_from(
        graph,
        patient,
        by_type["MedicationRequest"],
        by_type["MedicationStatement"],
        by_type["Condition"],
        by_type["AllergyIntolerance"],
        read,
    )
