"""MDM^T01-T11 (medical documents, chapter 9) -> DocumentReference from TXA and OBX text,
ServiceRequest for the orders (ORC/OBR) the document answers, linked by ``basedOn``."""

from __future__ import annotations

from fhirhub.adapters.hl7.convert.context import Conversion, ConversionError
from fhirhub.adapters.hl7.convert.obr import convert_service_request
from fhirhub.adapters.hl7.convert.obx import convert_obx
from fhirhub.adapters.hl7.convert.pid import convert_patient
from fhirhub.adapters.hl7.convert.pv1 import convert_pv1
from fhirhub.adapters.hl7.convert.txa import convert_txa
from fhirhub.adapters.hl7.parsing import Segment

#: OBX value types that carry the document body; other OBX rows (HD, CWE, NM...) are
#: observations about the document and become Observation resources.
DOCUMENT_TYPES = frozenset({"TX", "FT", "ST", "ED", ""})


def convert_mdm(ctx: Conversion) -> None:
    message = ctx.message
    convert_patient(ctx, message.first("PID"))
    convert_pv1(ctx, message.first("PV1"))
    txa = message.first("TXA")
    if txa is None:
        raise ConversionError(
            "MDM needs a TXA segment (document notification)", segment="TXA", code="100"
        )
    orders: list[str | None] = []
    orc: Segment | None = None
    for segment in message.segments:
        if segment.name == "ORC":
            orc = segment
        elif segment.name == "OBR":
            orders.append(convert_service_request(ctx, orc, segment, len(orders) + 1))
            orc = None
    if orc is not None:
        orders.append(convert_service_request(ctx, orc, None, len(orders) + 1))
    body = [obx for obx in message.all("OBX") if obx.get(2).upper() in DOCUMENT_TYPES]
    convert_txa(ctx, txa, body, [o for o in orders if o])
    for index, obx in enumerate(message.all("OBX"), 1):
        if obx.get(2).upper() not in DOCUMENT_TYPES:
            convert_obx(ctx, obx, str(index))
