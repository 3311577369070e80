"""``$diet-optimise`` and ``$diet-approve``: access, storage and the answer.

Access (docs/diet.md, "Who may do what"):

* The operation runs as its caller. The patient is read through the SDK, so another tenant's
  patient, or another patient than a patient-context token's own, is 404.
* Storing the draft needs ``c`` on NutritionOrder (the SDK's transaction checks the scopes)
  and is refused to patient-context callers; its Provenance is written by the hub itself (the
  system acting for the caller's tenant: Provenance is append-only, never written with a
  user's scopes), naming the caller as author: a NutritionOrder is an order, made
  for a patient, not by one. ``store=false`` computes the plan without writing anything, which
  any caller who may read the patient may do.
* ``NutritionOrder/{id}/$diet-approve`` turns a draft from this plugin into an active order. It
  needs ``u`` on NutritionOrder and an approver role (``approver_roles`` in the plugin's
  settings; default ``clinician`` and ``dietitian``). A ``resource_before_write`` guard refuses
  any other way of activating one of this plugin's orders without that role.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fhirhub.sdk import (
    TENANT_SYSTEM,
    FhirError,
    Hub,
    OperationCall,
    acting_as,
    current_access,
    invalid,
    plugin_settings,
    read,
    system_for,
    transaction,
    update,
)

from . import model as lp
from .fhir_output import ORDER_TAG, nutrition_order, output_parameters, provenance
from .planner import PlanError, optimise
from .record import read_patient
from .request import parse

PLUGIN_NAME = "diet"
DEFAULT_APPROVER_ROLES = ("clinician", "dietitian")


def settings(hub: Hub) -> dict[str, Any]:
    table: dict[str, Any] = plugin_settings(hub, PLUGIN_NAME)
    return table


def approver_roles(hub: Hub) -> tuple[str, ...]:
    roles = settings(hub).get("approver_roles") or DEFAULT_APPROVER_ROLES
    return tuple(str(role) for role in roles)


def diet_optimise(call: OperationCall) -> dict[str, Any]:
    """``Patient/{id}/$diet-optimise`` and ``$diet-optimise`` (see docs/diet.md)."""
    request = parse(call.body, call.parameters)
    if call.resource_id is not None:
        if request.patient not in (None, call.resource_id):
            raise invalid("The patient parameter names another patient than the URL")
        request.patient = call.resource_id
    facts = read_patient(call.hub, request.patient) if request.patient else None
    if request.patient is None and None in (request.age, request.sex, request.weight_kg):
        # Without a patient the caller describes the person; height may be absent.
        raise invalid("$diet-optimise without a patient needs the age, sex and weight parameters")
    access = current_access()
    if request.store and request.patient is None:
        request.store = False
    if request.store and access.patient is not None:
        raise FhirError(
            403,
            "A patient-context token may compute a plan (store=false) but not store a "
            "NutritionOrder: orders are written by practitioners",
            code="forbidden",
        )
    if request.store:
        access.require("c", "NutritionOrder")
    limit = float(settings(call.hub).get("milp_time_limit_s", lp.MIP_TIME_LIMIT_S))
    try:
        plan = optimise(request, facts, milp_time_limit=limit)
    except PlanError as error:
        raise invalid(str(error)) from None
    if plan.status != "optimal":
        return output_parameters(plan, None)
    order = nutrition_order(plan, request.patient)
    if not request.store:
        return output_parameters(plan, order)
    stored = _store(call.hub, plan, order)
    return output_parameters(plan, stored)


def _store(hub: Hub, plan: Any, order: dict[str, Any]) -> dict[str, Any]:
    """The order (as the caller) and its Provenance (as the hub, for the caller's tenant) in
    one unit of work: both or neither."""
    author = _author(hub)
    with transaction(hub) as unit:
        created = unit.create(order).version
        target = f"NutritionOrder/{created.resource_id}/_history/{created.version_id}"
        with acting_as(system_for(current_access().tenant)):
            unit.create(provenance(plan, target, author))
    return read(hub, "NutritionOrder", created.resource_id)


SUBJECT_SYSTEM = "https://fhirhub.dev/fhir/sid/subject"


def _resolvable(hub: Hub, reference: object) -> str | None:
    """``reference`` when it names a resource the caller can read, else None: a stored
    reference must resolve (the hub checks), and a token's fhirUser need not exist here."""
    if not isinstance(reference, str) or reference.count("/") != 1:
        return None
    resource_type, resource_id = reference.split("/")
    try:
        read(hub, resource_type, resource_id)
    except FhirError:
        return None
    return reference


def _author(hub: Hub) -> dict[str, Any]:
    """The caller as the Provenance author: its FHIR user when that resolves, otherwise a
    logical reference by its subject; on behalf of its tenant."""
    access = current_access()
    fhir_user = _resolvable(hub, (access.extra or {}).get("fhir_user"))
    who: dict[str, Any] = {
        "identifier": {"system": SUBJECT_SYSTEM, "value": access.subject},
        "display": access.subject,
    }
    if fhir_user is not None:
        who = {"reference": fhir_user, "display": access.subject}
    agent: dict[str, Any] = {
        "type": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                    "code": "author",
                    "display": "Author",
                }
            ]
        },
        "who": who,
    }
    if access.tenant is not None:
        organization = _resolvable(hub, f"Organization/{access.tenant}")
        agent["onBehalfOf"] = (
            {"reference": organization}
            if organization
            else {"identifier": {"system": TENANT_SYSTEM, "value": access.tenant}}
        )
    return agent


def is_diet_order(resource: dict[str, Any]) -> bool:
    tags = (resource.get("meta") or {}).get("tag") or []
    return any(
        tag.get("system") == ORDER_TAG["system"] and tag.get("code") == ORDER_TAG["code"]
        for tag in tags
    )


def diet_approve(call: OperationCall) -> dict[str, Any]:
    """``NutritionOrder/{id}/$diet-approve``: draft -> active, by a dietitian."""
    access = current_access()
    access.require_role(*approver_roles(call.hub))
    assert call.resource_id is not None
    order = read(call.hub, "NutritionOrder", call.resource_id)  # 404 across tenants
    if not is_diet_order(order):
        raise invalid("Only NutritionOrders made by $diet-optimise are approved here")
    if order.get("status") != "draft":
        raise FhirError(
            409,
            f"NutritionOrder/{call.resource_id} is {order.get('status')}, not draft",
            code="conflict",
        )
    version = (order.get("meta") or {}).get("versionId")
    order["status"] = "active"
    order["dateTime"] = datetime.now(UTC).isoformat(timespec="seconds")
    fhir_user = _resolvable(call.hub, (access.extra or {}).get("fhir_user"))
    if fhir_user is not None and fhir_user.startswith(("Practitioner/", "PractitionerRole/")):
        order["orderer"] = {"reference": fhir_user}
    note = call.parameters.get("note")
    order.setdefault("note", []).append(
        {
            "authorString": access.subject,
            "time": order["dateTime"],
            "text": f"Approved by {access.subject}" + (f": {note[0]}" if note else ""),
        }
    )
    if_match = f'W/"{version}"' if version else None
    return update(call.hub, order, if_match=if_match)


def guard_activation(resource: dict[str, Any], previous_status: str | None, hub: Hub) -> None:
    """Refuse activating one of this plugin's orders without an approver role (the
    ``resource_before_write`` guard)."""
    if resource.get("resourceType") != "NutritionOrder" or not is_diet_order(resource):
        return
    if resource.get("status") == "active" and previous_status != "active":
        current_access().require_role(*approver_roles(hub))
