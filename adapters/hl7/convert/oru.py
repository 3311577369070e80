"""ORU^R01 / OUL^R22 (results) -> DiagnosticReport per OBR with its Observations.

Segments are read in order (the message grammar: PATIENT_RESULT { ORDER_OBSERVATION { ORC,
OBR, OBSERVATION { OBX } } }); an OBX belongs to the OBR before it. OBX rows before any OBR
are patient-level observations. Each OBR is its own order: two OBRs sharing order numbers
still give two reports (the second is told apart by its position).
"""

from __future__ import annotations

from typing import Any

from fhirhub.adapters.hl7.convert.al1 import convert_al1
from fhirhub.adapters.hl7.convert.context import Conversion
from fhirhub.adapters.hl7.convert.dg1 import convert_dg1
from fhirhub.adapters.hl7.convert.obr import (
    convert_report,
    convert_service_request,
    order_identifier,
)
from fhirhub.adapters.hl7.convert.obx import convert_obx, order_scope, result_identifier
from fhirhub.adapters.hl7.convert.pid import convert_patient
from fhirhub.adapters.hl7.convert.pv1 import convert_pv1
from fhirhub.adapters.hl7.convert.spm import convert_spm
from fhirhub.adapters.hl7.parsing import Segment


class _Order:
    """One ORDER_OBSERVATION group: its ORC, OBR, OBX rows and SPM specimens."""

    def __init__(self, orc: Segment | None, obr: Segment) -> None:
        self.orc = orc
        self.obr = obr
        self.results: list[Segment] = []
        self.specimens: list[Segment] = []


def convert_oru(ctx: Conversion) -> None:
    message = ctx.message
    convert_patient(ctx, message.first("PID"))
    convert_pv1(ctx, message.first("PV1"))
    for index, al1 in enumerate(message.all("AL1"), 1):
        convert_al1(ctx, al1, index)
    for index, dg1 in enumerate(message.all("DG1"), 1):
        convert_dg1(ctx, dg1, index)
    orc: Segment | None = None
    orders: list[_Order] = []
    loose: list[Segment] = []
    for segment in message.segments:
        if segment.name == "ORC":
            orc = segment
        elif segment.name == "OBR":
            orders.append(_Order(orc, segment))
            orc = None
        elif segment.name == "OBX":
            (orders[-1].results if orders else loose).append(segment)
        elif segment.name == "SPM" and orders:
            orders[-1].specimens.append(segment)
    for index, obx in enumerate(loose, 1):
        convert_obx(ctx, obx, str(index))
    fillers: dict[str, int] = {}
    for position, order in enumerate(orders, 1):
        filler = order_identifier(ctx, order.orc, order.obr, filler=True, position=position)
        scope = order_scope(filler)
        fillers[scope] = fillers.get(scope, 0) + 1
        part = None
        if fillers[scope] > 1:  # a second OBR with the same order numbers: its own report
            part = f"{scope}^{order.obr.get(4, 1)}^{fillers[scope]}"
            scope = part
        specimens = [s for s in (convert_spm(ctx, spm) for spm in order.specimens) if s]
        seen: dict[str, int] = {}
        observations: list[str] = []
        presented: list[dict[str, Any]] = []
        for obx in order.results:
            identifier = result_identifier(ctx, obx, scope, seen)
            reference = convert_obx(ctx, obx, identifier, presented)
            if reference is not None and obx.get(2).upper() not in ("ED", "RP"):
                observations.append(reference)
        request = convert_service_request(
            ctx, order.orc, order.obr, position, part=part, obr_notes=False
        )
        convert_report(
            ctx,
            order.orc,
            order.obr,
            position,
            observations,
            request,
            presented=presented,
            specimens=specimens,
            part=part,
        )
