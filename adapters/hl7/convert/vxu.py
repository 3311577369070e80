"""VXU^V04 (vaccination record update) -> Immunization per RXA (CDC IIS guide / IG map)."""

from __future__ import annotations

from fhirhub.adapters.hl7.convert.context import Conversion
from fhirhub.adapters.hl7.convert.nk1 import convert_nk1
from fhirhub.adapters.hl7.convert.obx import convert_obx
from fhirhub.adapters.hl7.convert.pid import convert_patient
from fhirhub.adapters.hl7.convert.pv1 import convert_pv1
from fhirhub.adapters.hl7.convert.rxa import convert_rxa
from fhirhub.adapters.hl7.parsing import Segment


def convert_vxu(ctx: Conversion) -> None:
    message = ctx.message
    ctx.owns_patient = True  # an IIS update carries current demographics
    convert_patient(ctx, message.first("PID"))
    for index, nk1 in enumerate(message.all("NK1"), 1):
        convert_nk1(ctx, nk1, index)
    convert_pv1(ctx, message.first("PV1"))
    orc: Segment | None = None
    rxa: Segment | None = None
    pending: list[tuple[Segment | None, Segment, Segment | None]] = []
    for segment in message.segments:
        if segment.name == "ORC":
            orc = segment
        elif segment.name == "RXA":
            rxa = segment
            pending.append((orc, rxa, None))
        elif segment.name == "RXR" and pending:
            pending[-1] = (pending[-1][0], pending[-1][1], segment)
    for index, (order, administration, route) in enumerate(pending, 1):
        convert_rxa(ctx, administration, route, order, index)
    for index, obx in enumerate(message.all("OBX"), 1):
        convert_obx(ctx, obx, str(index))
    _ = rxa
