"""SIU^S12-S17, S26 (scheduling, chapter 10) -> Appointment with its participants."""

from __future__ import annotations

from fhirhub.adapters.hl7.convert.context import Conversion, ConversionError
from fhirhub.adapters.hl7.convert.dg1 import convert_dg1
from fhirhub.adapters.hl7.convert.pid import convert_patient
from fhirhub.adapters.hl7.convert.pv1 import convert_pv1
from fhirhub.adapters.hl7.convert.sch import convert_sch


def convert_siu(ctx: Conversion) -> None:
    message = ctx.message
    sch = message.first("SCH")
    if sch is None:
        raise ConversionError("SIU needs an SCH segment", segment="SCH", code="100")
    if message.first("PID") is not None:
        convert_patient(ctx, message.first("PID"))
        convert_pv1(ctx, message.first("PV1"))
        for index, dg1 in enumerate(message.all("DG1"), 1):
            convert_dg1(ctx, dg1, index)
    convert_sch(ctx, sch)
