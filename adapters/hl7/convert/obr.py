"""ORC/OBR -> ServiceRequest (IG "ORC[ServiceRequest]", "OBR[ServiceRequest]") and
OBR -> DiagnosticReport (IG "OBR[DiagnosticReport]").

Identity: the placer order number (ORC-2/OBR-2) for the ServiceRequest, the filler order
number (ORC-3/OBR-3) for the DiagnosticReport; the message and OBR position otherwise.
"""

from __future__ import annotations

from typing import Any

from fhirhub.adapters.hl7.convert.context import Conversion
from fhirhub.adapters.hl7.convert.datatypes import codeable, entity_identifier
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


#: R5's DiagnosticReport.note, usable in R4 through the cross-version extension.
REPORT_NOTE = "http://hl7.org/fhir/5.0/StructureDefinition/extension-DiagnosticReport.note"


def _match(identifier: dict[str, Any]) -> dict[str, Any]:
    return {"system": identifier.get("system"), "value": identifier["value"]}


def convert_service_request(
    ctx: Conversion,
    orc: Segment | None,
    obr: Segment | None,
    position: int,
    code_segment: Segment | None = None,
    code_field: int = 4,
    *,
    part: str | None = None,
    obr_notes: bool = True,
) -> str | None:
    """``part``: set for the second and later OBRs of one message that share order numbers;
    it becomes an identifier of its own to match on, so they are not merged into one.
    ``obr_notes``: whether the NTEs after the OBR are the order's (in a result message they
    are the report's)."""
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
    authored = ctx.date(orc, 9) if orc is not None else None
    if authored:
        request["authoredOn"] = authored
    if obr is not None:
        priority = obr.get(5).upper() or (obr.get(27, 6).upper())
        if priority in ("S", "STAT"):
            request["priority"] = "stat"
        elif priority in ("A", "ASAP"):
            request["priority"] = "asap"
        occurrence = ctx.date(obr, 7)
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
    notes = ctx.notes(orc) + ctx.notes(code_segment) + (ctx.notes(obr) if obr_notes else [])
    if notes:
        request["note"] = notes
    match = _match(identifier)
    if part is not None:  # the shared order number would match two requests: a requisition
        match = {"system": f"urn:fhirhub:hl7v2:order-part:{ctx.patient_key}", "value": part}
        request["identifier"] = [match]
        request["requisition"] = identifier
    return ctx.add(request, identifier=match, upsert=True)


def convert_report(
    ctx: Conversion,
    orc: Segment | None,
    obr: Segment,
    position: int,
    results: list[str],
    order: str | None,
    *,
    presented: list[dict[str, Any]] | None = None,
    specimens: list[str] | None = None,
    part: str | None = None,
) -> str | None:
    """The DiagnosticReport of one OBR: ``results`` its Observations, ``presented`` the
    attachments of its embedded documents, ``specimens`` its SPM Specimens; ``part`` as
    for :func:`convert_service_request`. OBR-level NTE comments have no element in R4's
    DiagnosticReport: they go in R5's ``note`` through its cross-version extension."""
    code = codeable(obr, 4)
    if code is None:
        ctx.warn(
            obr,
            4,
            "universal service identifier is empty (required); no DiagnosticReport",
            code="101",
        )
        return None
    identifier = order_identifier(ctx, orc, obr, filler=True, position=position)
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "identifier": [identifier],
        "status": _report_status(ctx, obr),
        "code": code,
        "subject": {"reference": ctx.patient},
    }
    if ctx.encounter:
        report["encounter"] = {"reference": ctx.encounter}
    effective = ctx.date(obr, 7)
    if effective:
        report["effectiveDateTime"] = effective
    issued = ctx.date(obr, 22, precision="instant")
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
    if specimens:
        report["specimen"] = [{"reference": s} for s in specimens]
    if presented:
        report["presentedForm"] = presented
    notes = ctx.notes(obr)
    if notes:
        report["extension"] = [{"url": REPORT_NOTE, "valueAnnotation": n} for n in notes]
    match = _match(identifier)
    if part is not None:  # the shared filler number stays with the first report only
        match = {"system": f"urn:fhirhub:hl7v2:report-part:{ctx.patient_key}", "value": part}
        report["identifier"] = [match]
    return ctx.add(report, identifier=match, upsert=True)


def _report_status(ctx: Conversion, obr: Segment) -> str:
    """OBR-25 (table 0123) by the IG's map; ``unknown`` when missing or not in the table."""
    sent = obr.get(25).upper()
    status = REPORT_STATUS.get(sent)
    if status is None:
        text = f"result status {sent!r} is not in table 0123" if sent else "result status is empty"
        ctx.warn(obr, 25, f"{text}; stored as unknown", code="103" if sent else "101")
        return "unknown"
    return status
