"""SPM -> Specimen (IG "SPM[Specimen]"): identifiers SPM-2 (placer^filler EIP), type SPM-4,
collection site SPM-8, amount SPM-12, collected SPM-17, received SPM-18, condition SPM-24."""

from __future__ import annotations

from typing import Any

from fhirhub.adapters.hl7.convert.context import Conversion
from fhirhub.adapters.hl7.convert.datatypes import codeable, decimal
from fhirhub.adapters.hl7.parsing import Segment


def convert_spm(ctx: Conversion, spm: Segment) -> str | None:
    placer = spm.get(2, 1, 1)
    filler = spm.get(2, 2, 1)
    kind = codeable(spm, 4)
    if not (placer or filler or kind) or ctx.patient is None:
        return None
    identifier = {
        "system": f"urn:fhirhub:hl7v2:specimen:{ctx.patient_key}",
        "value": filler or placer or f"{ctx.message.control_id}^{spm.sequence}",
    }
    specimen: dict[str, Any] = {
        "resourceType": "Specimen",
        "identifier": [identifier],
        "subject": {"reference": ctx.patient},
    }
    if filler:
        specimen["accessionIdentifier"] = {"system": ctx.sender_system, "value": filler}
    if kind:
        specimen["type"] = kind
    collection: dict[str, Any] = {}
    collected = ctx.date(spm, 17)
    if collected:
        collection["collectedDateTime"] = collected
    site = codeable(spm, 8)
    if site:
        collection["bodySite"] = site
    amount = decimal(spm.get(12, 1))
    if amount is not None:
        collection["quantity"] = {"value": amount}
        if spm.get(12, 2, 1):
            collection["quantity"]["unit"] = spm.get(12, 2, 2) or spm.get(12, 2, 1)
    if collection:
        specimen["collection"] = collection
    received = ctx.date(spm, 18)
    if received:
        specimen["receivedTime"] = received
    condition = codeable(spm, 24)
    if condition:
        specimen["condition"] = [condition]
    notes = ctx.notes(spm)
    if notes:
        specimen["note"] = notes
    return ctx.add(specimen, identifier=identifier, upsert=True)
