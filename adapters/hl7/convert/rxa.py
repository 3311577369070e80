"""RXA (+RXR) -> Immunization (IG "RXA[Immunization]"): vaccine RXA-5, date RXA-3, dose
RXA-6/7, lot RXA-15, manufacturer RXA-17 (CWE, MVX codes), completion RXA-20, action RXA-21
(``D``: the earlier record was wrong -> entered-in-error), route RXR-1, site RXR-2."""

from __future__ import annotations

from typing import Any

from fhirhub.adapters.hl7.convert.context import Conversion
from fhirhub.adapters.hl7.convert.datatypes import codeable, decimal
from fhirhub.adapters.hl7.convert.obx import unit
from fhirhub.adapters.hl7.convert.participants import organization, practitioner
from fhirhub.adapters.hl7.convert.tables import code_system_url
from fhirhub.adapters.hl7.parsing import Segment

#: RXA-20 completion status (table 0322); empty means complete (CDC IIS guide).
STATUS = {"CP": "completed", "PA": "completed", "RE": "not-done", "NA": "not-done", "": "completed"}


def convert_rxa(
    ctx: Conversion, rxa: Segment, rxr: Segment | None, orc: Segment | None, index: int
) -> str | None:
    vaccine = codeable(rxa, 5)
    occurrence = ctx.date(rxa, 3)
    if vaccine is None or occurrence is None or ctx.patient is None:
        return None
    order_id = orc.get(3, 1) if orc is not None else ""
    identifier = {
        "system": f"urn:fhirhub:hl7v2:immunization:{ctx.patient_key}",
        "value": order_id or f"{rxa.get(5, 1)}-{rxa.get(3)}",
    }
    immunization: dict[str, Any] = {
        "resourceType": "Immunization",
        "identifier": [identifier],
        "status": _status(ctx, rxa),
        "vaccineCode": vaccine,
        "patient": {"reference": ctx.patient},
        "occurrenceDateTime": occurrence,
        "primarySource": rxa.get(9, 1) in ("00", ""),
    }
    dose = decimal(rxa.get(6))
    if dose is not None and rxa.get(6) != "999":
        immunization["doseQuantity"] = {"value": dose, **(unit(ctx, rxa, 7) if rxa.get(7) else {})}
    lot = rxa.get(15)
    if lot:
        immunization["lotNumber"] = lot
    expires = ctx.date(rxa, 16, precision="date")
    if expires:
        immunization["expirationDate"] = expires
    manufacturer = _manufacturer(ctx, rxa)
    if manufacturer:
        immunization["manufacturer"] = manufacturer
    if rxa.get(18):
        reason = codeable(rxa, 18)
        if reason:
            immunization["statusReason"] = reason
    performer = practitioner(ctx, rxa, 10)
    if performer and "reference" in performer:
        immunization["performer"] = [{"actor": performer}]
    if rxr is not None:
        route, site = codeable(rxr, 1), codeable(rxr, 2)
        if route:
            immunization["route"] = route
        if site:
            immunization["site"] = site
    if ctx.encounter:
        immunization["encounter"] = {"reference": ctx.encounter}
    notes = ctx.notes(rxa)
    if notes:
        immunization["note"] = notes
    return ctx.add(immunization, identifier=identifier, upsert=True)


def _status(ctx: Conversion, rxa: Segment) -> str:
    if rxa.get(21).upper() == "D":  # action code "delete": the dose was recorded in error
        return "entered-in-error"
    sent = rxa.get(20).upper()
    status = STATUS.get(sent)
    if status is None:
        ctx.warn(
            rxa,
            20,
            f"completion status {sent!r} is not in table 0322; stored as completed",
            code="103",
        )
        return "completed"
    return status


def _manufacturer(ctx: Conversion, rxa: Segment) -> dict[str, Any] | None:
    """RXA-17 is a CWE (code ^ name ^ coding system, MVX in the US), not an XON: the
    Organization is found by the code in its system, so each manufacturer is its own."""
    code, name, system_name = rxa.get(17, 1), rxa.get(17, 2), rxa.get(17, 3)
    if not code and not name:
        return None
    system = code_system_url(system_name) if system_name else None
    return organization(ctx, name, code, system)
