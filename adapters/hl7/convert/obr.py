"""ORC/OBR -> ServiceRequest (IG "ORC[ServiceRequest]", "OBR[ServiceRequest]") and
OBR -> DiagnosticReport (IG "OBR[DiagnosticReport]").

Identity: the placer order number (ORC-2/OBR-2) for the ServiceRequest, the filler order
number (ORC-3/OBR-3) for the DiagnosticReport; the message and OBR position otherwise.
"""

from __future__ import annotations

from typing import Any

from fhirhub.adapters.hl7.convert.context import Conversion
from fhirhub.adapters.hl7.convert.datatypes import codeable, dtm, entity_identifier
from fhirhub.adapters.hl7.convert.participants import practitioner
from fhirhub.adapters.hl7.convert.tables import ORDER_STATUS, REPORT_STATUS, concept
from fhirhub.adapters.hl7.parsing import Segment


def order_identifier(
    ctx: Conversion, orc: Segment | None, obr: Segment | None, *, filler: bool, position: int
) -> dict[str, Any]:
    number = 3 if filler else 2
    for segment in (orc, obr):
        if segment is not None:
            found = entity_identifier(segment, number)
            if found:
                found.setdefault("system", ctx.sender_system)
                found["type"] = concept("0203", "FILL" if filler else "PLAC")
                return found
    return {
        "system": f"urn:fhirhub:hl7v2:order:{ctx.patient_key}",
        "value": f"{ctx.message.control_id}-{position}",
    }


def _match(identifier: dict[str, Any]) -> dict[str, Any]:
    return {"system": identifier.get("system"), "value": identifier["value"]}


def convert_service_request(
    ctx: Conversion,
    orc: Segment | None,
    obr: Segment | None,
    position: int,
    code_segment: Segment | None = None,
    code_field: int = 4,
) -> str | None:
    source = code_segment or obr
    code = codeable(source, code_field) if source is not None else None
    if code is None and orc is None:
        return None
    identifier = order_identifier(ctx, orc, obr, filler=False, position=position)
    control = orc.get(1).upper() if orc is not None else "NW"
    status = ORDER_STATUS.get(orc.get(5).upper(), "") if orc is not None and orc.get(5) else ""
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "identifier": [identifier],
        "status": status or ORDER_STATUS.get(control, "active"),
        "intent": "order",
        "subject": {"reference": ctx.patient},
    }
    filler = order_identifier(ctx, orc, obr, filler=True, position=position)
    if filler.get("type"):
        request["identifier"].append(filler)
    if code:
        request["code"] = code
    if ctx.encounter:
        request["encounter"] = {"reference": ctx.encounter}
    authored = dtm(orc.get(9)) if orc is not None else None
    if authored:
        request["authoredOn"] = authored
    if obr is not None:
        priority = obr.get(5).upper() or (obr.get(27, 6).upper())
        if priority in ("S", "STAT"):
            request["priority"] = "stat"
        elif priority in ("A", "ASAP"):
            request["priority"] = "asap"
        occurrence = dtm(obr.get(7))
        if occurrence:
            request["occurrenceDateTime"] = occurrence
        reason = codeable(obr, 31)
        if reason:
            request["reasonCode"] = [reason]
    requester = None
    for segment, number in ((orc, 12), (obr, 16)):
        if segment is not None and requester is None:
            requester = practitioner(ctx, segment, number)
    if requester and "reference" in requester:
        request["requester"] = requester
    return ctx.add(request, identifier=_match(identifier), upsert=True)


def convert_report(
    ctx: Conversion,
    orc: Segment | None,
    obr: Segment,
    position: int,
    results: list[str],
    order: str | None,
) -> str | None:
    code = codeable(obr, 4)
    if code is None:
        return None
    identifier = order_identifier(ctx, orc, obr, filler=True, position=position)
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "identifier": [identifier],
        "status": REPORT_STATUS.get(obr.get(25).upper(), "final"),
        "code": code,
        "subject": {"reference": ctx.patient},
    }
    if ctx.encounter:
        report["encounter"] = {"reference": ctx.encounter}
    effective = dtm(obr.get(7))
    if effective:
        report["effectiveDateTime"] = effective
    issued = dtm(obr.get(22), precision="instant")
    if issued:
        report["issued"] = issued
    category = codeable(obr, 24)
    if category:
        report["category"] = [category]
    if order:
        report["basedOn"] = [{"reference": order}]
    if results:
        report["result"] = [{"reference": r} for r in results]
    performer = practitioner(ctx, obr, 32) if obr.get(32) else None
    if performer and "reference" in performer:
        report["resultsInterpreter"] = [performer]
    return ctx.add(report, identifier=_match(identifier), upsert=True)
