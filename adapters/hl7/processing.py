"""One HL7 v2 message in, its acknowledgment(s) out: parse, convert, commit, ACK.

The ACK is built only after the transaction committed (chapter 2.9: an AA promises the
receiver has taken responsibility). Every outcome other than AA also stores a dead letter
first, so an AE/AR never means "dropped". A message whose (sender, MSH-10) was already
processed is acknowledged AA without touching the store again: its Provenance, whose id is
derived from that pair, exists.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fhirhub.adapters.hl7.ack import ErrorLocation, Header, acknowledgments
from fhirhub.adapters.hl7.convert import ConversionError, convert, message_key
from fhirhub.adapters.hl7.dead_letters import store_dead_letter
from fhirhub.adapters.hl7.parsing import Hl7ParseError, Message, decode, parse, split_batch
from fhirhub.fhir_store.errors import FhirError

if TYPE_CHECKING:
    from fhirhub.core.hub import Hub

log = logging.getLogger("fhirhub.hl7")

#: Largest message accepted (bytes); bigger ones are rejected (AR) and dead-lettered.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

#: FHIR resource type -> the segment its data came from, to name it in ERR.
SOURCE_SEGMENT = {
    "Patient": "PID",
    "RelatedPerson": "NK1",
    "Encounter": "PV1",
    "Location": "PV1",
    "Practitioner": "PV1",
    "Observation": "OBX",
    "DiagnosticReport": "OBR",
    "ServiceRequest": "ORC",
    "AllergyIntolerance": "AL1",
    "Condition": "DG1",
    "Procedure": "PR1",
    "Coverage": "IN1",
    "Organization": "MSH",
    "Immunization": "RXA",
    "MedicationRequest": "RXE",
    "Appointment": "SCH",
    "DocumentReference": "TXA",
    "Binary": "MSH",
    "Provenance": "MSH",
}


@dataclass
class Outcome:
    """What happened to one message."""

    code: str  # AA | AE | AR
    acks: list[bytes]
    message: Message | None = None
    error: str | None = None
    duplicate: bool = False
    dead_letter: str | None = None
    bundle_entries: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ack(self) -> bytes:
        """The application ACK (or the only ACK sent); empty when the sender wants none."""
        return self.acks[-1] if self.acks else b""


def _stored_text(hub: Hub, key: str) -> str | None:
    """The normalised text of the message recorded under ``key``, or None if none was."""
    import base64

    import orjson

    from fhirhub.fhir_store.store import read_current

    with hub.store.read() as conn:
        provenance = read_current(conn, "Provenance", key)
        if provenance is None or provenance.deleted:
            return None
        binary = read_current(conn, "Binary", key)
    if binary is None or binary.content is None:
        return ""
    data = base64.b64decode(orjson.loads(binary.content).get("data", ""))
    try:
        return parse(data).text
    except Hl7ParseError:
        return ""


def resolve_key(hub: Hub, message: Message) -> tuple[str, bool]:
    """``(key, duplicate)`` for ``message``.

    The same (sender, MSH-10) with the same content is a retransmission: acknowledge, do not
    re-process (chapter 2.9.2, MSH-10 uniqueness). The same pair with *different* content is
    a sender reusing control ids: it is processed under a content-qualified key, so neither
    message is lost or mistaken for the other.
    """
    key = message_key(message)
    stored = _stored_text(hub, key)
    if stored is None:
        return key, False
    if stored == message.text:
        return key, True
    qualified = message_key(message, qualified=True)
    log.warning(
        "HL7 %s reuses MSH-10 %s with different content", message.sender, message.control_id
    )
    return qualified, _stored_text(hub, qualified) is not None


def already_processed(hub: Hub, message: Message) -> bool:
    return resolve_key(hub, message)[1]


def _fail(
    hub: Hub,
    raw: bytes,
    header: Header,
    code: str,
    location: ErrorLocation,
    message: Message | None,
    description: str,
) -> Outcome:
    reason = f"{location.segment}-{location.field or ''}: {location.text}".replace("-:", ":")
    letter = store_dead_letter(hub, raw, reason=reason, ack_code=code, description=description)
    log.warning("HL7 %s %s: %s", code, description, reason)
    return Outcome(
        code,
        acknowledgments(header, code, location.text, location),
        message,
        location.text,
        dead_letter=letter,
    )


def handle(hub: Hub, raw: bytes, *, check_duplicates: bool = True) -> Outcome:
    """Process one message (bytes as received) and return its outcome and ACK(s)."""
    if len(raw) > MAX_MESSAGE_BYTES:
        header = Header.salvage(raw)
        where = ErrorLocation(
            "207", f"Message of {len(raw)} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes"
        )
        return _fail(hub, raw, header, "AR", where, None, "oversized message")
    try:
        message = parse(raw)
    except Hl7ParseError as error:
        header = Header.salvage(raw)
        where = ErrorLocation(error.code, str(error), error.segment, error.sequence, error.field)
        return _fail(
            hub,
            raw,
            header,
            "AR",
            where,
            None,
            f"unparseable message {header.control_id or '(no MSH-10)'}",
        )
    header = Header.of(message)
    label = f"{message.message_type} {message.control_id} from {message.sender}"
    key, duplicate = resolve_key(hub, message)
    if check_duplicates and duplicate:
        log.info("HL7 duplicate %s acknowledged without re-processing", label)
        return Outcome(
            "AA",
            acknowledgments(header, "AA", "duplicate: already processed"),
            message,
            duplicate=True,
        )
    try:
        bundle = convert(message, key=key)
    except ConversionError as error:
        code = "AR" if error.code in ("200", "201", "203") else "AE"
        where = ErrorLocation(error.code, str(error), error.segment, error.sequence, error.field)
        return _fail(hub, raw, header, code, where, message, label)
    except Exception as error:  # a converter bug must not lose the message
        log.exception("HL7 conversion crashed for %s", label)
        where = ErrorLocation("207", f"Conversion failed: {type(error).__name__}: {error}")
        return _fail(hub, raw, header, "AE", where, message, label)
    from fhirhub.core.interactions.bundle import process_bundle

    try:
        process_bundle(hub, bundle, base_url=hub.base_url)
    except FhirError as error:
        segment = "MSH"
        if error.entry_index is not None:
            entries = bundle["entry"]
            if 0 <= error.entry_index < len(entries):
                rtype = entries[error.entry_index]["resource"]["resourceType"]
                segment = SOURCE_SEGMENT.get(rtype, "MSH")
        where = ErrorLocation("207", f"FHIR store refused the data: {error.message}", segment)
        return _fail(hub, raw, header, "AE", where, message, label)
    except Exception as error:
        log.exception("HL7 commit failed for %s", label)
        where = ErrorLocation("207", f"Commit failed: {type(error).__name__}: {error}")
        return _fail(hub, raw, header, "AE", where, message, label)
    return Outcome(
        "AA", acknowledgments(header, "AA"), message, bundle_entries=len(bundle["entry"])
    )


def process(hub: Hub, raw_bytes: bytes) -> bytes:
    """Process one message; return its application ACK (b"" if the sender asked for none)."""
    return handle(hub, raw_bytes).ack


def process_batch(hub: Hub, raw: bytes) -> list[Outcome]:
    """A single message or an FHS/BHS batch (chapter 2.10.3): one outcome per message."""
    text = decode(raw)
    parts = split_batch(text)
    if len(parts) <= 1:
        return [handle(hub, raw)]
    return [handle(hub, part.encode("utf-8")) for part in parts]
