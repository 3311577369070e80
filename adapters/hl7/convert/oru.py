"""ORU^R01 / OUL^R22 (results) -> DiagnosticReport per OBR with its Observations.

Segments are read in order (the message grammar: PATIENT_RESULT { ORDER_OBSERVATION { ORC,
OBR, OBSERVATION { OBX } } }); an OBX belongs to the OBR before it. OBX rows before any OBR
are patient-level observations.
"""

from __future__ import annotations

from fhirhub.adapters.hl7.convert.context import Conversion
from fhirhub.adapters.hl7.convert.obr import convert_report, convert_service_request
from fhirhub.adapters.hl7.convert.obx import convert_obx
from fhirhub.adapters.hl7.convert.pid import convert_patient
from fhirhub.adapters.hl7.convert.pv1 import convert_pv1
from fhirhub.adapters.hl7.parsing import Segment


def convert_oru(ctx: Conversion) -> None:
    message = ctx.message
    convert_patient(ctx, message.first("PID"))
    convert_pv1(ctx, message.first("PV1"))
    orc: Segment | None = None
    obr: Segment | None = None
    results: list[str] = []
    groups: list[tuple[Segment | None, Segment, list[str]]] = []
    for segment in message.segments:
        if segment.name == "ORC":
            orc = segment
        elif segment.name == "OBR":
            results = []
            obr = segment
            groups.append((orc, obr, results))
        elif segment.name == "OBX":
            scope = (obr.get(3, 1) or obr.get(2, 1)) if obr is not None else ""
            key = (
                f"{scope or message.control_id}-{len(groups)}-{segment.get(1) or len(results) + 1}"
            )
            if obr is not None and not segment.get(1):
                key = f"{key}-{len(results)}"
            reference = convert_obx(ctx, segment, key)
            if reference is not None and obr is not None:
                results.append(reference)
    for position, (order_control, request, observations) in enumerate(groups, 1):
        order = convert_service_request(ctx, order_control, request, position)
        convert_report(ctx, order_control, request, position, observations, order)
