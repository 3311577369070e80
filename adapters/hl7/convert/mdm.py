"""MDM^T01-T11 (medical documents, chapter 9) -> DocumentReference from TXA and OBX text,
ServiceRequest for the orders (ORC/OBR) the document answers, linked by ``basedOn``."""

from __future__ import annotations

from fhirhub.adapters.hl7.convert.context import Conversion, ConversionError
from fhirhub.adapters.hl7.convert.obr import convert_service_request
from fhirhub.adapters.hl7.convert.pid import convert_patient
from fhirhub.adapters.hl7.convert.pv1 import convert_pv1
from fhirhub.adapters.hl7.convert.txa import convert_txa


def convert_mdm(ctx: Conversion) -> None:
    message = ctx.message
    convert_patient(ctx, message.first("PID"))
    convert_pv1(ctx, message.first("PV1"))
    txa = message.first("TXA")
    if txa is None:
        raise ConversionError(
            "MDM needs a TXA segment (document notification)", segment="TXA", code="100"
        )
    orders = []
    orc = None
    for segment in message.segments:
        if segment.name == "ORC":
            orc = segment
        elif segment.name == "OBR":
            orders.append(convert_service_request(ctx, orc, segment, len(orders) + 1))
            orc = None
    if orc is not None:
        orders.append(convert_service_request(ctx, orc, None, len(orders) + 1))
    convert_txa(ctx, txa, message.all("OBX"), [o for o in orders if o])
