"""RDE^O11 / O25 (pharmacy encoded order, chapter 4) -> MedicationRequest per ORC/RXE,
Observation per OBX (results the order depends on)."""

from __future__ import annotations

from fhirhub.adapters.hl7.convert.al1 import convert_al1
from fhirhub.adapters.hl7.convert.context import Conversion, ConversionError
from fhirhub.adapters.hl7.convert.obx import convert_obx
from fhirhub.adapters.hl7.convert.pid import convert_patient
from fhirhub.adapters.hl7.convert.pv1 import convert_pv1
from fhirhub.adapters.hl7.convert.rxe import convert_rxe
from fhirhub.adapters.hl7.parsing import Segment


def convert_rde(ctx: Conversion) -> None:
    message = ctx.message
    convert_patient(ctx, message.first("PID"))
    convert_pv1(ctx, message.first("PV1"))
    for index, al1 in enumerate(message.all("AL1"), 1):
        convert_al1(ctx, al1, index)
    orc: Segment | None = None
    groups: list[list[Segment | None]] = []
    for segment in message.segments:
        if segment.name == "ORC":
            orc = segment
        elif segment.name == "RXE":
            groups.append([orc, segment, None])
        elif segment.name == "RXR" and groups and groups[-1][2] is None:
            groups[-1][2] = segment
    if not groups:
        raise ConversionError(
            "RDE needs an RXE segment (pharmacy encoded order)", segment="RXE", code="100"
        )
    for position, (order, rxe, route) in enumerate(groups, 1):
        assert rxe is not None
        convert_rxe(ctx, order, rxe, route, position)
    for index, obx in enumerate(message.all("OBX"), 1):
        convert_obx(ctx, obx, str(index))
