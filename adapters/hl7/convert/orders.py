"""ORM^O01, OML^O21, OMG^O19 (orders) -> ServiceRequest per ORC (with its OBR details)."""

from __future__ import annotations

from fhirhub.adapters.hl7.convert.context import Conversion, ConversionError
from fhirhub.adapters.hl7.convert.obr import convert_service_request
from fhirhub.adapters.hl7.convert.obx import convert_obx
from fhirhub.adapters.hl7.convert.pid import convert_patient
from fhirhub.adapters.hl7.convert.pv1 import convert_pv1
from fhirhub.adapters.hl7.parsing import Segment


def convert_orders(ctx: Conversion) -> None:
    message = ctx.message
    convert_patient(ctx, message.first("PID"))
    convert_pv1(ctx, message.first("PV1"))
    groups: list[tuple[Segment, Segment | None]] = []
    for segment in message.segments:
        if segment.name == "ORC":
            groups.append((segment, None))
        elif segment.name in ("OBR", "ORD") and groups and groups[-1][1] is None:
            groups[-1] = (groups[-1][0], segment)
        elif segment.name == "OBR":
            groups.append((segment, segment))  # an OBR without its own ORC
    if not groups:
        raise ConversionError(
            "The order message has no ORC segment (common order)", segment="ORC", code="100"
        )
    for position, (orc, obr) in enumerate(groups, 1):
        order_control = orc if orc.name == "ORC" else None
        convert_service_request(ctx, order_control, obr, position)
    for index, obx in enumerate(message.all("OBX"), 1):
        convert_obx(ctx, obx, str(index))
