"""Decision pathways the assistant runs deterministically: FHIR ``PlanDefinition``s whose
actions carry FHIRPath applicability conditions over named inputs.

The format (docs/ai.md): an action's ``input`` is a ``DataRequirement`` whose element ``id``
names a variable (``potassium``) and whose ``codeFilter`` names the Observation (LOINC) or
Condition codes that fill it: the latest Observation's value, or whether an active Condition
exists. Each action's ``condition`` of kind ``applicability`` (``text/fhirpath``, e.g.
``%potassium > 6.0``) decides whether it applies; an applicable action's sub-actions are
evaluated in turn. A condition over a missing input is *unknown* and does not apply. The
result names the PlanDefinition and its version, the inputs with their sources and the
whole trace, so the logic is visible and the answer reproducible.

Pathways come from the caller's tenant (``PlanDefinition`` resources) and, for those the
store does not hold by ``url``, from the plugin's examples (``data/pathways``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fhirpathpy

from fhirhub.sdk import FhirError, acting_as, invalid, search

from .render import concept_text

EXAMPLES = Path(__file__).resolve().parent / "data" / "pathways"


def example_pathways() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*.json"))]


def available(ctx: Any) -> list[dict[str, Any]]:
    """The caller's pathways, then the examples whose ``url`` the store does not hold."""
    try:
        with acting_as(ctx.access):
            stored = search(ctx.hub, "PlanDefinition", {"status": "active", "_count": "100"})
    except FhirError:
        stored = []
    urls = {p.get("url") for p in stored}
    return stored + [p for p in example_pathways() if p.get("url") not in urls]


def find(ctx: Any, name: str) -> dict[str, Any]:
    wanted = name.strip().lower()
    for plan in available(ctx):
        keys = {str(plan.get(k) or "").lower() for k in ("id", "url", "name", "title")}
        if wanted in keys or any(wanted and wanted in k for k in keys):
            return plan
    raise invalid(f"No pathway named {name!r}")


def _inputs(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for action in actions:
        found.extend(i for i in action.get("input") or [] if i.get("id"))
        found.extend(_inputs(action.get("action") or []))
    return found


def _codes(requirement: dict[str, Any]) -> list[str]:
    return [
        f"{c.get('system')}|{c.get('code')}"
        for f in requirement.get("codeFilter") or []
        for c in f.get("code") or []
    ]


def _value(ctx: Any, requirement: dict[str, Any]) -> tuple[Any, str | None]:
    """The variable's value and the reference it came from."""
    if ctx.patient is None:
        raise invalid("A pathway runs for one patient; open the patient's chart first")
    kind = requirement.get("type")
    params = {"patient": f"Patient/{ctx.patient}", "code": ",".join(_codes(requirement))}
    with acting_as(ctx.access):
        if kind == "Observation":
            found = search(ctx.hub, "Observation", {**params, "_sort": "-date", "_count": "1"})
            if not found:
                return None, None
            quantity = found[0].get("valueQuantity") or {}
            return quantity.get("value"), f"Observation/{found[0]['id']}"
        if kind == "Condition":
            found = search(ctx.hub, "Condition", {**params, "clinical-status": "active"})
            return bool(found), (f"Condition/{found[0]['id']}" if found else None)
    raise invalid(f"Pathway inputs of type {kind!r} are not supported")


def run(ctx: Any, plan: dict[str, Any]) -> dict[str, Any]:
    actions = plan.get("action") or []
    variables: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    for requirement in _inputs(actions):
        value, reference = _value(ctx, requirement)
        variables[requirement["id"]] = value
        inputs[requirement["id"]] = {"value": value, "reference": reference}
    trace: list[dict[str, Any]] = []
    recommendations: list[dict[str, str]] = []

    def walk(level: list[dict[str, Any]], depth: int) -> None:
        for action in level:
            verdict = _applies(action, variables)
            trace.append(
                {
                    "depth": depth,
                    "title": str(action.get("title") or ""),
                    "conditions": [
                        c["expression"].get("expression")
                        for c in action.get("condition") or []
                        if c.get("kind") == "applicability"
                    ],
                    "result": verdict,
                }
            )
            if verdict == "applies":
                recommendations.append(
                    {
                        "title": str(action.get("title") or ""),
                        "description": str(action.get("description") or ""),
                    }
                )
                walk(action.get("action") or [], depth + 1)

    walk(actions, 0)
    reference = f"PlanDefinition/{plan.get('id')}"
    return {
        "pathway": reference,
        "url": plan.get("url"),
        "version": plan.get("version") or (plan.get("meta") or {}).get("versionId"),
        "title": plan.get("title") or plan.get("name"),
        "type": concept_text(plan.get("type")),
        "inputs": inputs,
        "trace": trace,
        "recommendations": recommendations,
    }


def _applies(action: dict[str, Any], variables: dict[str, Any]) -> str:
    """ "applies", "does not apply" or "unknown" (an input is missing)."""
    for condition in action.get("condition") or []:
        if condition.get("kind") != "applicability":
            continue
        expression = (condition.get("expression") or {}).get("expression")
        if not expression:
            continue
        try:
            result = fhirpathpy.evaluate({}, expression, variables)
        except Exception as error:  # noqa: BLE001 - a broken expression is the pathway's fault
            raise invalid(
                f"Pathway condition {expression!r} cannot be evaluated: {error}"
            ) from error
        if result == []:
            return "unknown"
        if result != [True]:
            return "does not apply"
    return "applies"
