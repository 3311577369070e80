"""ADT messages (HL7 v2 chapter 3) -> Patient, Encounter and what the segments carry.

The message owns the patient's demographics, so Patient, RelatedPerson and Encounter are
conditional updates. A40 (merge patient, IG message map ADT_A39/A40): the surviving Patient
links ``replaces`` to the prior one, which becomes ``active: false`` with a ``replaced-by``
link; its record is replaced by what MRG says (the prior record is retired).
"""

from __future__ import annotations

from typing import Any

from fhirhub.adapters.hl7.convert.al1 import convert_al1
from fhirhub.adapters.hl7.convert.context import Conversion, ConversionError
from fhirhub.adapters.hl7.convert.datatypes import identifiers
from fhirhub.adapters.hl7.convert.dg1 import convert_dg1
from fhirhub.adapters.hl7.convert.gt1 import convert_gt1
from fhirhub.adapters.hl7.convert.in1 import convert_in1, insurances
from fhirhub.adapters.hl7.convert.nk1 import convert_nk1
from fhirhub.adapters.hl7.convert.obx import convert_obx
from fhirhub.adapters.hl7.convert.pid import convert_patient
from fhirhub.adapters.hl7.convert.pr1 import convert_pr1
from fhirhub.adapters.hl7.convert.pv1 import convert_pv1

#: Events handled as patient / visit updates (ADT message structures of chapter 3).
EVENTS = (
    "A01 A02 A03 A04 A05 A06 A07 A08 A09 A10 A11 A13 A14 A15 A16 A25 A26 A27 A28 A31 A40 A60"
).split()


def convert_adt(ctx: Conversion) -> None:
    message = ctx.message
    ctx.owns_patient = True
    convert_patient(ctx, message.first("PID"))
    for index, nk1 in enumerate(message.all("NK1"), 1):
        convert_nk1(ctx, nk1, index)
    convert_pv1(ctx, message.first("PV1"))
    for index, obx in enumerate(message.all("OBX"), 1):
        convert_obx(ctx, obx, str(index))
    for index, al1 in enumerate(message.all("AL1"), 1):
        convert_al1(ctx, al1, index)
    for index, dg1 in enumerate(message.all("DG1"), 1):
        convert_dg1(ctx, dg1, index)
    for index, pr1 in enumerate(message.all("PR1"), 1):
        convert_pr1(ctx, pr1, index)
    for index, (in1, in2) in enumerate(insurances(message), 1):
        convert_in1(ctx, in1, index, in2)
    for index, gt1 in enumerate(message.all("GT1"), 1):
        convert_gt1(ctx, gt1, index)
    if message.trigger_event == "A40":
        _merge(ctx)


def _merge(ctx: Conversion) -> None:
    mrg = ctx.message.first("MRG")
    if mrg is None:
        raise ConversionError(
            "ADT^A40 needs an MRG segment (prior patient)", segment="MRG", code="100"
        )
    prior_ids = identifiers(mrg, 1)
    if not prior_ids:
        raise ConversionError(
            "MRG-1 (prior patient identifier list) is empty", segment="MRG", field=1
        )
    for identifier in prior_ids:
        identifier.setdefault("system", ctx.sender_system)
    assert ctx.patient is not None
    prior: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": prior_ids,
        "active": False,
        "link": [{"other": {"reference": ctx.patient}, "type": "replaced-by"}],
    }
    match = {"system": prior_ids[0]["system"], "value": prior_ids[0]["value"]}
    prior_ref = ctx.add(prior, identifier=match, upsert=True)
    for entry in ctx.builder.entries:
        if entry["fullUrl"] == ctx.patient:
            entry["resource"].setdefault("link", []).append(
                {"other": {"reference": prior_ref}, "type": "replaces"}
            )
            entry["resource"]["active"] = True
