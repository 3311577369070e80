"""HL7 v2 message -> one FHIR R4 transaction Bundle (HL7 v2-to-FHIR IG message maps).

:func:`convert` picks the message family by MSH-9 (code and trigger event), runs its segment
maps and adds the Binary holding the source bytes and the Provenance linking it to every
resource produced. Unsupported types raise :class:`ConversionError` with HL7 error code 200
(unsupported message type) so the sender gets an AR naming MSH-9.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhirhub.adapters.hl7.ack import ErrorLocation
from fhirhub.adapters.hl7.convert.adt import EVENTS as ADT_EVENTS
from fhirhub.adapters.hl7.convert.adt import convert_adt
from fhirhub.adapters.hl7.convert.builder import BundleBuilder
from fhirhub.adapters.hl7.convert.context import Conversion, ConversionError
from fhirhub.adapters.hl7.convert.mdm import convert_mdm
from fhirhub.adapters.hl7.convert.orders import convert_orders
from fhirhub.adapters.hl7.convert.oru import convert_oru
from fhirhub.adapters.hl7.convert.provenance import ER7_MEDIA_TYPE, add_provenance, message_key
from fhirhub.adapters.hl7.convert.rde import convert_rde
from fhirhub.adapters.hl7.convert.siu import convert_siu
from fhirhub.adapters.hl7.convert.vxu import convert_vxu
from fhirhub.adapters.hl7.parsing import Message

Converter = Callable[[Conversion], None]

#: (MSH-9.1, MSH-9.2) -> converter. Only these types are accepted; see docs/hl7.md.
CONVERTERS: dict[tuple[str, str], Converter] = {
    **{("ADT", event): convert_adt for event in ADT_EVENTS},
    ("ORU", "R01"): convert_oru,
    ("OUL", "R22"): convert_oru,
    ("ORM", "O01"): convert_orders,
    ("OML", "O21"): convert_orders,
    ("OMG", "O19"): convert_orders,
    **{("SIU", event): convert_siu for event in ("S12", "S13", "S14", "S15", "S16", "S17", "S26")},
    ("VXU", "V04"): convert_vxu,
    **{("MDM", f"T{n:02d}"): convert_mdm for n in range(1, 12)},
    ("RDE", "O11"): convert_rde,
    ("RDE", "O25"): convert_rde,
}

#: Message types that are deliberately not converted, with the reason given in the AR.
NOT_CONVERTED = {
    ("ADT", "A29"): "deletes person information; fhirhub never deletes on a feed's word",
    ("ADT", "A41"): "account merge has no FHIR Account model in this adapter",
    ("ADT", "A45"): "move visit information between accounts is not mapped",
    ("ADT", "A47"): "change of patient identifier list is not mapped",
}


def supported(message: Message) -> bool:
    return (message.message_code, message.trigger_event) in CONVERTERS


@dataclass
class Converted:
    """A message's transaction Bundle and the fields that were coerced or dropped on the way
    (each an ERR segment with severity W in the AA)."""

    bundle: dict[str, Any]
    warnings: list[ErrorLocation]


def convert(message: Message, *, key: str | None = None) -> dict[str, Any]:
    """The transaction Bundle for ``message`` (see :func:`convert_message`)."""
    return convert_message(message, key=key).bundle


def convert_message(message: Message, *, key: str | None = None) -> Converted:
    """The transaction Bundle for ``message`` (a dict ready for ``process_bundle``) and its
    warnings; ``key`` is the id of its Binary and Provenance (default :func:`message_key`)."""
    kind = (message.message_code, message.trigger_event)
    converter = CONVERTERS.get(kind)
    if converter is None:
        reason = NOT_CONVERTED.get(kind, "no conversion is defined for it")
        raise ConversionError(
            f"Unsupported message type {message.message_type}: {reason}",
            segment="MSH",
            field=9,
            code="200",
        )
    key = key or message_key(message)
    ctx = Conversion(message, BundleBuilder(message), key=key)
    converter(ctx)
    ctx.report_unmapped()
    add_provenance(ctx, message.raw or message.text.encode("utf-8"), key)
    return Converted(ctx.builder.bundle(), ctx.warnings)


__all__ = [
    "CONVERTERS",
    "ER7_MEDIA_TYPE",
    "ConversionError",
    "Converted",
    "convert",
    "convert_message",
    "message_key",
    "supported",
]
