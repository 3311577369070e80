"""RXE (+ORC, RXR) -> MedicationRequest (IG "RXE[MedicationRequest]"): medication RXE-2,
dose RXE-3/5, dispense RXE-10/11, refills RXE-12, route RXR-1."""

from __future__ import annotations

from typing import Any

from fhirhub.adapters.hl7.convert.context import Conversion
from fhirhub.adapters.hl7.convert.datatypes import codeable, decimal
from fhirhub.adapters.hl7.convert.obr import order_identifier
from fhirhub.adapters.hl7.convert.obx import unit
from fhirhub.adapters.hl7.convert.participants import practitioner
from fhirhub.adapters.hl7.parsing import Segment

STATUS = {
    "NW": "active",
    "OK": "active",
    "CA": "cancelled",
    "DC": "stopped",
    "HD": "on-hold",
    "OC": "cancelled",
    "CM": "completed",
    "RP": "active",
    "XO": "active",
}


def convert_rxe(
    ctx: Conversion, orc: Segment | None, rxe: Segment, rxr: Segment | None, position: int
) -> str | None:
    medication = codeable(rxe, 2)
    if medication is None or ctx.patient is None:
        return None
    identifier = order_identifier(ctx, orc, None, filler=False, position=position)
    request: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "identifier": [identifier],
        "status": STATUS.get(orc.get(1).upper() if orc is not None else "NW", "active"),
        "intent": "order",
        "medicationCodeableConcept": medication,
        "subject": {"reference": ctx.patient},
    }
    if ctx.encounter:
        request["encounter"] = {"reference": ctx.encounter}
    if orc is not None:
        authored = ctx.date(orc, 9)
        if authored:
            request["authoredOn"] = authored
        requester = practitioner(ctx, orc, 12)
        if requester and "reference" in requester:
            request["requester"] = requester
    dosage: dict[str, Any] = {}
    amount = decimal(rxe.get(3))
    if amount is not None:
        dose: dict[str, Any] = {"value": amount, **(unit(ctx, rxe, 5) if rxe.get(5) else {})}
        dosage["doseAndRate"] = [{"doseQuantity": dose}]
    if rxr is not None:
        route = codeable(rxr, 1)
        if route:
            dosage["route"] = route
    text = rxe.get(7, 2) or rxe.get(7, 1)
    if text:
        dosage["text"] = text
    if dosage:
        request["dosageInstruction"] = [dosage]
    dispense: dict[str, Any] = {}
    quantity = decimal(rxe.get(10))
    if quantity is not None:
        dispense["quantity"] = {"value": quantity}
        if rxe.get(11, 1):
            dispense["quantity"].update(unit=rxe.get(11, 2) or rxe.get(11, 1))
    if rxe.get(12).isdigit():
        dispense["numberOfRepeatsAllowed"] = int(rxe.get(12))
    if dispense:
        request["dispenseRequest"] = dispense
    notes = ctx.notes(rxe)
    if notes:
        request["note"] = notes
    match = {"system": identifier.get("system"), "value": identifier["value"]}
    return ctx.add(request, identifier=match, upsert=True)


def convert_rxo(
    ctx: Conversion, orc: Segment | None, rxo: Segment, rxr: Segment | None, position: int
) -> str | None:
    """RXO (pharmacy order in ORM^O01 / OMP) -> MedicationRequest (IG "RXO[MedicationRequest]"):
    medication RXO-1, dose RXO-2 (minimum) with units RXO-4, instructions RXO-6, dispense
    RXO-11/12, refills RXO-13, route RXR-1."""
    medication = codeable(rxo, 1)
    if medication is None or ctx.patient is None:
        return None
    identifier = order_identifier(ctx, orc, None, filler=False, position=position)
    request: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "identifier": [identifier],
        "status": STATUS.get(orc.get(1).upper() if orc is not None else "NW", "active"),
        "intent": "order",
        "medicationCodeableConcept": medication,
        "subject": {"reference": ctx.patient},
    }
    if ctx.encounter:
        request["encounter"] = {"reference": ctx.encounter}
    if orc is not None:
        authored = ctx.date(orc, 9)
        if authored:
            request["authoredOn"] = authored
        requester = practitioner(ctx, orc, 12)
        if requester and "reference" in requester:
            request["requester"] = requester
    dosage: dict[str, Any] = {}
    amount = decimal(rxo.get(2))
    if amount is not None:
        dose = {"value": amount, **(unit(ctx, rxo, 4) if rxo.get(4) else {})}
        dosage["doseAndRate"] = [{"doseQuantity": dose}]
    if rxr is not None:
        route = codeable(rxr, 1)
        if route:
            dosage["route"] = route
    text = rxo.get(6, 2) or rxo.get(6, 1)
    if text:
        dosage["text"] = text
    if dosage:
        request["dosageInstruction"] = [dosage]
    dispense: dict[str, Any] = {}
    quantity = decimal(rxo.get(11))
    if quantity is not None:
        dispense["quantity"] = {"value": quantity, **(unit(ctx, rxo, 12) if rxo.get(12) else {})}
    if rxo.get(13).isdigit():
        dispense["numberOfRepeatsAllowed"] = int(rxo.get(13))
    if dispense:
        request["dispenseRequest"] = dispense
    notes = ctx.notes(rxo) + ctx.notes(orc)
    if notes:
        request["note"] = notes
    match = {"system": identifier.get("system"), "value": identifier["value"]}
    return ctx.add(request, identifier=match, upsert=True)
