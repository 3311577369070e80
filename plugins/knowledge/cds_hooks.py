"""A CDS Hooks 2.0 service (https://cds-hooks.hl7.org/2.0/): the order checks as cards.

``GET  /plugins/knowledge/cds-services``: discovery (``order-select`` and ``order-sign``);
``POST /plugins/knowledge/cds-services/{id}``: a hook request -> ``{"cards": [...]}``.

The record comes from the request's ``prefetch`` when the EMR sent it (the templates in the
discovery answer), otherwise from this hub's store, read with the caller's access.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from fhirhub.plugins.knowledge.checks import Finding, check_order
from fhirhub.plugins.knowledge.context import context_from, order_item, read_context
from fhirhub.plugins.knowledge.graph import scope_for
from fhirhub.plugins.knowledge.service import service_of
from fhirhub.sdk import FhirError, Hub, current_access, snapshot

PATIENT = "{{context.patientId}}"
PREFETCH = {
    "patient": f"Patient/{PATIENT}",
    "medications": f"MedicationRequest?patient={PATIENT}&status=active,draft,on-hold",
    "statements": f"MedicationStatement?patient={PATIENT}&status=active,intended",
    "conditions": f"Condition?patient={PATIENT}",
    "allergies": f"AllergyIntolerance?patient={PATIENT}",
}
SERVICES = [
    {
        "hook": hook,
        "id": f"knowledge-{hook}",
        "title": "Drug interactions and contraindications",
        "description": "Checks draft medication orders against the patient's other drugs, "
        "conditions and allergies using the hub's clinical knowledge graph.",
        "prefetch": PREFETCH,
    }
    for hook in ("order-select", "order-sign")
]
INDICATOR = {"high": "critical", "moderate": "warning", "low": "info"}


def _error(status: int, text: str) -> JSONResponse:
    return JSONResponse({"error": text}, status_code=status)


def _resources(bundle: Any) -> list[dict[str, Any]]:
    if not isinstance(bundle, dict):
        return []
    if bundle.get("resourceType") != "Bundle":
        return [bundle]
    return [
        e["resource"] for e in bundle.get("entry") or () if isinstance(e, dict) and "resource" in e
    ]


def card(finding: Finding) -> dict[str, Any]:
    edge = finding.edge
    detail = finding.detail
    if edge.management:
        detail += f"\n\n**Recommendation:** {edge.management}"
    summary = finding.summary if len(finding.summary) <= 140 else finding.summary[:137] + "..."
    return {
        "uuid": str(uuid.uuid4()),
        "summary": summary,
        "indicator": INDICATOR.get(finding.severity, "warning"),
        "detail": detail,
        "source": {
            "label": edge.origin or "fhirhub knowledge graph",
            "topic": {
                "system": "https://fhirhub.org/fhir/CodeSystem/knowledge-check",
                "code": finding.check,
            },
        },
    }


def cards_for(hub: Hub, service_id: str, request: dict[str, Any]) -> list[dict[str, Any]]:
    hook = service_id.removeprefix("knowledge-")
    context = request.get("context")
    if request.get("hook") != hook or not isinstance(context, dict):
        raise FhirError(400, f"{service_id} answers the {hook} hook with a context object")
    patient_id = context.get("patientId")
    draft = context.get("draftOrders")
    if not isinstance(patient_id, str) or not isinstance(draft, dict):
        raise FhirError(400, "context.patientId and context.draftOrders are required")
    access = current_access()
    graph = service_of(hub).index.graph()
    scope = scope_for(access.tenant)
    patient = f"Patient/{patient_id}"
    prefetch = request.get("prefetch") or {}
    with snapshot(hub) as tx:
        if all(prefetch.get(k) is not None for k in ("medications", "conditions", "allergies")):
            record = context_from(
                graph,
                patient,
                _resources(prefetch["medications"]),
                _resources(prefetch.get("statements")),
                _resources(prefetch["conditions"]),
                _resources(prefetch["allergies"]),
                tx.read,
            )
        else:
            tx.read("Patient", patient_id)  # 404 unless the caller may see the patient
            record = read_context(graph, patient, tx.search, tx.read)
        selections = set(context.get("selections") or ())
        cards = []
        for resource in _resources(draft):
            if resource.get("resourceType") != "MedicationRequest":
                continue
            reference = f"MedicationRequest/{resource.get('id')}"
            if hook == "order-select" and selections and reference not in selections:
                continue
            order = order_item(graph, resource, reference, tx.read)
            cards += [card(f) for f in check_order(graph, scope, order, record)]
    return cards


def router(hub: Hub) -> APIRouter:
    routes = APIRouter()

    @routes.get("/cds-services")
    def discovery() -> dict[str, Any]:
        return {"services": SERVICES}

    @routes.post("/cds-services/{service_id}", response_model=None)
    def invoke(service_id: str, request: Any = Body(...)) -> dict[str, Any] | JSONResponse:  # noqa: B008
        if service_id not in {s["id"] for s in SERVICES}:
            return _error(404, f"No CDS service {service_id!r}")
        if not isinstance(request, dict):
            return _error(400, "The request body must be a JSON object")
        try:
            return {"cards": cards_for(hub, service_id, request)}
        except FhirError as error:
            return _error(error.status, error.message)

    return routes
