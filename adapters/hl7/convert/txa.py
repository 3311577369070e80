"""TXA (+OBX text) -> DocumentReference (IG "TXA[DocumentReference]", MDM_T02 map).

The document body (OBX-5 of TX/FT/ST/ED rows) is attached as text/plain (or the ED data).
"""

from __future__ import annotations

import base64
from typing import Any

from fhirhub.adapters.hl7.convert.context import Conversion
from fhirhub.adapters.hl7.convert.datatypes import codeable, entity_identifier
from fhirhub.adapters.hl7.convert.participants import practitioner
from fhirhub.adapters.hl7.parsing import Segment

#: TXA-17 document completion status (table 0271) -> DocumentReference.docStatus.
DOC_STATUS = {
    "AU": "final",
    "LA": "final",
    "DO": "final",
    "PA": "preliminary",
    "IP": "preliminary",
    "IN": "preliminary",
    "DI": "preliminary",
}


def convert_txa(
    ctx: Conversion, txa: Segment, observations: list[Segment], orders: list[str] | None = None
) -> str | None:
    identifier = entity_identifier(txa, 12) or entity_identifier(txa, 16)
    if identifier is None:
        identifier = {"value": f"{ctx.message.control_id}-TXA"}
    identifier.setdefault("system", ctx.sender_system)
    status = "entered-in-error" if txa.get(19).upper() in ("OB", "DE") else "current"
    document: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "masterIdentifier": identifier,
        "status": status,
        "subject": {"reference": ctx.patient},
    }
    doc_status = DOC_STATUS.get(txa.get(17).upper())
    if doc_status:
        document["docStatus"] = doc_status
    kind = codeable(txa, 2)
    if kind:
        document["type"] = kind
    when = ctx.date(txa, 4, precision="instant") or ctx.date(txa, 6, precision="instant")
    if when:
        document["date"] = when
    authors = [
        a
        for a in (practitioner(ctx, txa, 9, i) for i in range(len(txa.repetitions(9))))
        if a and "reference" in a
    ]
    if authors:
        document["author"] = authors
    context: dict[str, Any] = {}
    if ctx.encounter:
        context["encounter"] = [{"reference": ctx.encounter}]
    if orders:
        context["related"] = [{"reference": order} for order in orders]
    if context:
        document["context"] = context
    text_lines: list[str] = []
    attachments: list[dict[str, Any]] = []
    for obx in observations:
        kind_code = obx.get(2).upper()
        if kind_code == "ED":
            data = obx.get(5, 5)
            if data:
                mime = obx.get(5, 2) or "application"
                subtype = obx.get(5, 3) or "octet-stream"
                attachments.append({"contentType": f"{mime}/{subtype}".lower(), "data": data})
        else:
            for rep in range(len(obx.repetitions(5))):
                line = obx.get(5, 1, repetition=rep)
                if line:
                    text_lines.append(line)
    if text_lines:
        attachments.insert(
            0,
            {
                "contentType": "text/plain; charset=utf-8",
                "data": base64.b64encode("\n".join(text_lines).encode()).decode(),
            },
        )
    if not attachments:
        attachments.append({"contentType": "text/plain", "title": txa.get(2, 2) or "document"})
    document["content"] = [{"attachment": a} for a in attachments]
    description = codeable(txa, 2)
    if description and description.get("text"):
        document["description"] = description["text"]
    return ctx.add(
        document,
        identifier={"system": identifier["system"], "value": identifier["value"]},
        upsert=True,
    )
