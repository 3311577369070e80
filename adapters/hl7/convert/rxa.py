"""RXA (+RXR) -> Immunization (IG "RXA[Immunization]"): vaccine RXA-5, date RXA-3, dose
RXA-6/7, lot RXA-15, completion RXA-20, route RXR-1, site RXR-2."""

from __future__ import annotations

from typing import Any

from fhirhub.adapters.hl7.convert.context import Conversion
from fhirhub.adapters.hl7.convert.datatypes import codeable, decimal
from fhirhub.adapters.hl7.convert.participants import organization_xon, practitioner
from fhirhub.adapters.hl7.parsing import Segment

STATUS = {"CP": "completed", "PA": "completed", "RE": "not-done", "NA": "not-done"}


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
        "status": STATUS.get(rxa.get(20).upper(), "completed"),
        "vaccineCode": vaccine,
        "patient": {"reference": ctx.patient},
        "occurrenceDateTime": occurrence,
        "primarySource": rxa.get(9, 1) in ("00", ""),
    }
    dose = decimal(rxa.get(6))
    if dose is not None and rxa.get(6) != "999":
        quantity: dict[str, Any] = {"value": dose}
        if rxa.get(7, 1):
            quantity.update(
                unit=rxa.get(7, 2) or rxa.get(7, 1),
                code=rxa.get(7, 1),
                system="http://unitsofmeasure.org",
            )
        immunization["doseQuantity"] = quantity
    lot = rxa.get(15)
    if lot:
        immunization["lotNumber"] = lot
    expires = ctx.date(rxa, 16, precision="date")
    if expires:
        immunization["expirationDate"] = expires
    manufacturer = organization_xon(ctx, rxa, 17)
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
