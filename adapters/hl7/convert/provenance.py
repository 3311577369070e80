"""The source message as a Binary and a Provenance naming every resource it produced
(IG "Message to Provenance"; http://hl7.org/fhir/R4/provenance.html).

Both have ids derived from the sender and MSH-10 (:func:`message_key`), so the Provenance is
also the record that this message was processed: a duplicate is detected by one read.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

from fhirhub.adapters.hl7.convert.context import Conversion
from fhirhub.adapters.hl7.convert.participants import sending_organization
from fhirhub.adapters.hl7.parsing import Message

#: The media type HL7 registers for ER7-encoded v2 messages.
ER7_MEDIA_TYPE = "x-application/hl7-v2+er7"


def message_key(message: Message, *, qualified: bool = False, tenant: str | None = None) -> str:
    """A FHIR id (``[A-Za-z0-9-.]{1,64}``) for "this control id from this sender".

    ``qualified`` adds the content digest: used when a sender reuses an MSH-10 for a message
    with different content (a sender error, but seen in practice), so both are kept.
    ``tenant`` qualifies the key by the feed's tenant: used only when another tenant's feed,
    whose sender has the same name, already holds the plain key.
    """
    seed = f"{message.sender}|{message.control_id}"
    if tenant is not None:
        seed = f"{tenant}|{seed}"
    if qualified:
        seed += "|" + hashlib.sha256(message.text.encode("utf-8")).hexdigest()
    digest = hashlib.sha256(seed.encode()).hexdigest()
    return f"hl7-{digest[:40]}"


def add_provenance(ctx: Conversion, raw: bytes, key: str | None = None) -> None:
    key = key or message_key(ctx.message)
    sender = sending_organization(ctx)
    binary: dict[str, Any] = {
        "resourceType": "Binary",
        "id": key,
        "contentType": ER7_MEDIA_TYPE,
        "data": base64.b64encode(raw).decode("ascii"),
    }
    binary_url = ctx.builder.add(binary, url=f"Binary/{key}")
    targets = [t for t in ctx.targets if t != sender.get("reference")]
    provenance: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": key,
        "target": [{"reference": t} for t in targets] or [{"reference": binary_url}],
        "recorded": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "activity": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                    "code": "UPDATE",
                    "display": "revise",
                }
            ],
            "text": f"HL7 v2 {ctx.message.message_type} {ctx.message.control_id}",
        },
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "author",
                        }
                    ]
                },
                "who": sender,
            }
        ],
        "entity": [
            {
                "role": "source",
                "what": {"reference": binary_url, "display": f"MSH-10 {ctx.message.control_id}"},
            }
        ],
    }
    ctx.builder.add(provenance, url=f"Provenance/{key}")
