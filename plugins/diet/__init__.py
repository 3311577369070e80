"""The diet optimiser: the cheapest (or most preferred) day of food that meets a condition's
nutrient targets, computed by linear programming from USDA SR28 and written back as a draft
``NutritionOrder`` for a dietitian to approve. See docs/diet.md.

* ``POST /fhir/Patient/{id}/$diet-optimise`` and ``POST /fhir/$diet-optimise``
  (:mod:`.operation`; parameters in :mod:`.request`);
* ``POST /fhir/NutritionOrder/{id}/$diet-approve``: draft -> active, by a dietitian;
* ``/plugins/diet/ui/?patient=ID``: the optimiser page; a panel in the patient chart links to it;
* ``/plugins/diet/foods?q=``: search the full SR28 table (foods a request may ``include``).

Modules: :mod:`.foods` (the table), :mod:`.profiles` (targets), :mod:`.person` (energy),
:mod:`.record` (the patient's record), :mod:`.model` (the LP/MILP, HiGHS), :mod:`.explain`
(infeasibility), :mod:`.planner` (one optimisation), :mod:`.fhir_output` (the FHIR answer).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from fhirhub.sdk import Hub, Operation, WriteContext, hookimpl

from . import operation
from .ui import router

__version__ = "1.0.0"
PLUGIN_NAME = "diet"
MANIFEST = {
    "resource_types": [
        "Patient",
        "Observation",
        "AllergyIntolerance",
        "Condition",
        "NutritionOrder",
        "Provenance",
    ],
    "scopes": [
        "user/Patient.r",
        "user/Observation.rs",
        "user/AllergyIntolerance.rs",
        "user/Condition.rs",
        "user/NutritionOrder.cru",
    ],
}

OPTIMISE_PARAMETERS: tuple[dict[str, Any], ...] = (
    {"name": "profile", "use": "in", "min": 0, "max": "*", "type": "code"},
    {"name": "objective", "use": "in", "min": 0, "max": "1", "type": "code"},
    {"name": "exclude", "use": "in", "min": 0, "max": "*", "type": "string"},
    {"name": "maxServingsPerFood", "use": "in", "min": 0, "max": "1", "type": "decimal"},
    {"name": "patient", "use": "in", "min": 0, "max": "1", "type": "Reference"},
    {"name": "age", "use": "in", "min": 0, "max": "1", "type": "decimal"},
    {"name": "sex", "use": "in", "min": 0, "max": "1", "type": "code"},
    {"name": "weight", "use": "in", "min": 0, "max": "1", "type": "Quantity"},
    {"name": "height", "use": "in", "min": 0, "max": "1", "type": "Quantity"},
    {"name": "include", "use": "in", "min": 0, "max": "*", "type": "string"},
    {"name": "prefer", "use": "in", "min": 0, "max": "*", "type": "string"},
    {"name": "pattern", "use": "in", "min": 0, "max": "*", "type": "code"},
    {"name": "integer", "use": "in", "min": 0, "max": "1", "type": "boolean"},
    {"name": "servingStep", "use": "in", "min": 0, "max": "1", "type": "decimal"},
    {"name": "activity", "use": "in", "min": 0, "max": "1", "type": "code"},
    {"name": "store", "use": "in", "min": 0, "max": "1", "type": "boolean"},
    {"name": "status", "use": "out", "min": 1, "max": "1", "type": "code"},
    {"name": "nutritionOrder", "use": "out", "min": 0, "max": "1", "type": "NutritionOrder"},
    {"name": "plan", "use": "out", "min": 1, "max": "1", "type": "string"},
    {"name": "total", "use": "out", "min": 0, "max": "*"},
    {"name": "food", "use": "out", "min": 0, "max": "*"},
    {"name": "explanation", "use": "out", "min": 0, "max": "*"},
    {"name": "relaxation", "use": "out", "min": 0, "max": "*"},
)


@hookimpl
def register_operations(hub: Hub) -> list[Operation]:
    description = (
        "The cheapest (or most preferred) day of food that meets the nutrient targets of "
        "condition profiles (DASH, diabetes, CKD 3-5, general), as a draft NutritionOrder"
    )
    return [
        Operation(
            "diet-optimise",
            operation.diet_optimise,
            system=True,
            instance=True,
            resource_types=("Patient",),
            affects_state=True,
            writes=("NutritionOrder",),
            description=description,
            parameters=OPTIMISE_PARAMETERS,
        ),
        Operation(
            "diet-approve",
            operation.diet_approve,
            instance=True,
            resource_types=("NutritionOrder",),
            affects_state=True,
            description="A dietitian approves a draft diet NutritionOrder: it becomes active",
            parameters=({"name": "note", "use": "in", "min": 0, "max": "1", "type": "string"},),
        ),
    ]


@hookimpl
def register_routes(hub: Hub) -> APIRouter:
    return router()


@hookimpl
def public_paths(hub: Hub) -> list[str]:
    # The pages and their scripts hold no patient data (see ui.py); data needs a token.
    return ["/plugins/diet/ui/"]


@hookimpl
def ui_pages(hub: Hub) -> list[dict[str, Any]]:
    return [{"path": "/plugins/diet/ui/", "title": "Diet optimiser", "icon": "🥗", "order": 60}]


@hookimpl
def ui_patient_panels(hub: Hub) -> list[dict[str, Any]]:
    return [
        {
            "id": "diet",
            "title": "Diet plan",
            "order": 95,
            "url": "/plugins/diet/ui/panel?patient={patient_id}",
        }
    ]


@hookimpl
def resource_before_write(resource: dict[str, Any], context: WriteContext) -> None:
    if context.resource_type != "NutritionOrder":
        return
    previous_status = None
    if context.previous is not None and context.previous.content:
        import orjson

        try:
            previous_status = orjson.loads(context.previous.content).get("status")
        except orjson.JSONDecodeError:  # sealed at rest: treat as not yet active (stricter)
            previous_status = None
    operation.guard_activation(resource, previous_status, context.hub)
