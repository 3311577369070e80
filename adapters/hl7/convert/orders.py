"""ORM^O01, OML^O21, OMG^O19 (orders) -> ServiceRequest per ORC (with its OBR details), or a
MedicationRequest where the ORC's detail is a pharmacy order (RXO); the patient's allergies
(AL1) and the order's diagnoses (DG1) as in ADT."""

from __future__ import annotations

from fhirhub.adapters.hl7.convert.al1 import convert_al1
from fhirhub.adapters.hl7.convert.context import Conversion, ConversionError
from fhirhub.adapters.hl7.convert.dg1 import convert_dg1
from fhirhub.adapters.hl7.convert.obr import convert_service_request
from fhirhub.adapters.hl7.convert.obx import convert_obx
from fhirhub.adapters.hl7.convert.pid import convert_patient
from fhirhub.adapters.hl7.convert.pv1 import convert_pv1
from fhirhub.adapters.hl7.convert.rxe import convert_rxo
from fhirhub.adapters.hl7.convert.spm import convert_spm
from fhirhub.adapters.hl7.parsing import Segment

#: Segments that detail an ORC (chapter 4: OBR for observations, ORD dietary, RXO pharmacy).
DETAILS = ("OBR", "ORD", "RXO")


def convert_orders(ctx: Conversion) -> None:
    message = ctx.message
    convert_patient(ctx, message.first("PID"))
    convert_pv1(ctx, message.first("PV1"))
    for index, al1 in enumerate(message.all("AL1"), 1):
        convert_al1(ctx, al1, index)
    groups: list[list[Segment | None]] = []  # [ORC or OBR, detail, RXR]
    for segment in message.segments:
        if segment.name == "ORC":
            groups.append([segment, None, None])
        elif segment.name in DETAILS and groups and groups[-1][1] is None:
            groups[-1][1] = segment
        elif segment.name == "OBR":
            groups.append([segment, segment, None])  # an OBR without its own ORC
        elif segment.name == "RXR" and groups and groups[-1][2] is None:
            groups[-1][2] = segment
    if not groups:
        raise ConversionError(
            "The order message has no ORC segment (common order)", segment="ORC", code="100"
        )
    for position, (orc, detail, route) in enumerate(groups, 1):
        assert orc is not None
        order_control = orc if orc.name == "ORC" else None
        if detail is not None and detail.name == "RXO":
            convert_rxo(ctx, order_control, detail, route, position)
        else:
            convert_service_request(ctx, order_control, detail, position)
    for index, dg1 in enumerate(message.all("DG1"), 1):
        convert_dg1(ctx, dg1, index)
    for spm in message.all("SPM"):
        convert_spm(ctx, spm)
    for index, obx in enumerate(message.all("OBX"), 1):
        convert_obx(ctx, obx, str(index))
