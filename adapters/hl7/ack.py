"""Acknowledgments (HL7 v2 chapter 2.9 "Message processing rules", 2.14 ACK, ERR segment).

Original mode (MSH-15 and MSH-16 empty): one application ACK, AA / AE / AR.
Enhanced mode: an accept ACK (CA / CE / CR) when MSH-15 asks for one, then an application
ACK when MSH-16 asks for one; each of them is AL (always), NE (never), ER (only on error) or
SU (only on success), HL7 table 0155.

The ERR segment carries the location both as ERR-1 (v2.3/2.4 ELD) and ERR-2 (v2.5+ ERL),
the error code in ERR-3 (table 0357), severity ERR-4 and a readable text in ERR-8.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from fhirhub.adapters.hl7.parsing import DEFAULT_SEPARATORS, Message, Separators, escape

#: Table 0357 texts for the codes this adapter uses.
ERROR_TEXT = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}
_counter = itertools.count(1)
_CONTROL_ID = re.compile(rb"^MSH(.)[^\r\n]*", re.MULTILINE)


#: Most ERR segments one ACK carries; the rest are counted in a last one (a message with
#: hundreds of coerced fields must not produce an ACK larger than the message).
MAX_ERR_SEGMENTS = 50


@dataclass(frozen=True)
class ErrorLocation:
    """One ERR segment: where (ERL: segment, its occurrence in the message, field, component),
    what (table 0357 code and a readable text) and how bad (ERR-4, table 0516: ``E`` error,
    ``W`` warning: the message was stored, this field was coerced or dropped)."""

    code: str
    text: str
    segment: str = "MSH"
    sequence: int = 1
    field: int | None = None
    component: int | None = None
    severity: str = "E"

    @property
    def where(self) -> str:
        """``SEG-f.c`` as people write it (``OBX-5.2``), for logs and dead-letter reasons."""
        place = self.segment
        if self.field is not None:
            place += f"-{self.field}"
            if self.component is not None:
                place += f".{self.component}"
        return place


def _now() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")


def _ack_control_id() -> str:
    return f"ACK{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}{next(_counter):06d}"


def wanted(mode: str, success: bool) -> bool:
    """Whether an acknowledgment condition (table 0155) asks for an ACK now."""
    mode = mode.upper()
    if mode in ("", "AL"):
        return True
    if mode == "NE":
        return False
    if mode == "ER":
        return not success
    if mode == "SU":
        return success
    return True


@dataclass(frozen=True)
class Header:
    """The MSH fields an ACK mirrors; recoverable even from a message that fails to parse."""

    sending_app: str = ""
    sending_facility: str = ""
    receiving_app: str = ""
    receiving_facility: str = ""
    control_id: str = ""
    processing_id: str = "P"
    version: str = "2.5.1"
    trigger: str = ""
    accept_ack: str = ""
    application_ack: str = ""
    separators: Separators = DEFAULT_SEPARATORS

    @property
    def enhanced(self) -> bool:
        return bool(self.accept_ack or self.application_ack)

    @classmethod
    def of(cls, message: Message) -> Header:
        msh = message.msh
        return cls(
            msh.raw(3),
            msh.raw(4),
            msh.raw(5),
            msh.raw(6),
            msh.get(10),
            msh.get(11, 1) or "P",
            msh.get(12) or "2.5.1",
            message.trigger_event,
            msh.get(15),
            msh.get(16),
            message.separators,
        )

    @classmethod
    def salvage(cls, raw: bytes) -> Header:
        """Best effort for unparseable input: the MSH fields if an MSH line is present."""
        match = _CONTROL_ID.search(raw[:65536].lstrip(b"\x0b\xef\xbb\xbf"))
        if not match:
            return cls()
        sep = match.group(1)
        fields = match.group(0).split(sep)

        def f(n: int) -> str:  # MSH-n is fields[n-1] because MSH-1 is the separator itself
            if n - 1 < len(fields):
                return fields[n - 1].decode("latin-1").strip()
            return ""

        if sep.isalnum() or sep in (b" ", b"\r", b"\n"):
            return cls()
        component = f(2)[:1] or "^"
        trigger = f(9).split(component)[1] if component in f(9) else ""
        version = f(12).split(component)[0]
        return cls(
            f(3), f(4), f(5), f(6), f(10)[:199], f(11)[:1] or "P", version or "2.5.1", trigger
        )


def _err_segment(error: ErrorLocation, s: Separators) -> str:
    """ERR-1 (ELD, v2.3/2.4: segment^sequence^field^code), ERR-2 (ERL, v2.5+:
    segment^sequence^field^repetition^component), ERR-3 (table 0357), ERR-4 severity,
    ERR-8 the text."""
    fs, cs = s.field, s.component
    where = [error.segment, str(error.sequence), str(error.field or "")]
    location = cs.join(where)
    if error.component is not None:
        location = cs.join([*where, "1", str(error.component)])
    code_text = ERROR_TEXT.get(error.code, "Application error")
    return fs.join(
        [
            "ERR",
            cs.join([*where, f"{error.code}{s.subcomponent}{escape(code_text, s)}"]),
            location,
            cs.join([error.code, code_text, "HL70357"]),
            error.severity,
            "",
            "",
            "",
            escape(error.text[:2000], s),
        ]
    )


def build_ack(
    header: Header,
    code: str,
    text: str = "",
    error: ErrorLocation | None = None,
    warnings: Sequence[ErrorLocation] = (),
) -> bytes:
    """One ACK message (ER7, segments separated by CR) for ``header``'s message: the error
    (if any) then the warnings, each an ERR segment."""
    s = header.separators
    fs, cs = s.field, s.component
    version = header.version if header.version else "2.5.1"
    msh = fs.join(
        [
            "MSH",
            s.encoding_characters,
            header.receiving_app or "FHIRHUB",
            header.receiving_facility,
            header.sending_app,
            header.sending_facility,
            _now(),
            "",
            f"ACK{cs}{header.trigger}{cs}ACK" if header.trigger else "ACK",
            _ack_control_id(),
            header.processing_id or "P",
            version,
        ]
    )
    segments = [msh, fs.join(["MSA", code, escape(header.control_id, s), escape(text[:80], s)])]
    errors = ([error] if error is not None else []) + list(warnings)
    for item in errors[:MAX_ERR_SEGMENTS]:
        segments.append(_err_segment(item, s))
    if len(errors) > MAX_ERR_SEGMENTS:
        more = len(errors) - MAX_ERR_SEGMENTS
        rest = ErrorLocation("207", f"{more} more warnings not listed", severity="W")
        segments.append(_err_segment(rest, s))
    return ("\r".join(segments) + "\r").encode("utf-8")


def acknowledgments(
    header: Header,
    code: str,
    text: str = "",
    error: ErrorLocation | None = None,
    warnings: Sequence[ErrorLocation] = (),
) -> list[bytes]:
    """The ACKs to send for a message whose processing ended with ``code`` (AA/AE/AR);
    ``warnings`` (fields coerced or dropped) go into the application ACK's ERR segments."""
    if not header.enhanced:
        return [build_ack(header, code, text, error, warnings)]
    success = code == "AA"
    acks: list[bytes] = []
    # The accept ACK says the message was safely received (committed to the store, even if
    # only as a dead letter), so it is CA unless the message was rejected outright.
    accept_code = "CR" if code == "AR" else "CA"
    application = (code != "AR" or not wanted(header.accept_ack, False)) and wanted(
        header.application_ack, success
    )
    if wanted(header.accept_ack, accept_code == "CA"):
        acks.append(
            build_ack(
                header,
                accept_code,
                text if accept_code != "CA" else "",
                error if accept_code != "CA" else None,
                # the message is already stored when the accept ACK goes out: it carries the
                # warnings when no application ACK will
                warnings if accept_code == "CA" and not application else (),
            )
        )
    # A rejection is told at the accept level (CR); when the sender suppressed accept ACKs
    # (MSH-15 NE) but asked for application ACKs, it gets AR there instead of silence.
    rejected_unheard = code == "AR" and not acks
    if (code != "AR" or rejected_unheard) and wanted(header.application_ack, success):
        acks.append(build_ack(header, code, text, error, warnings))
    return acks


def batch_acknowledgment(batch: Sequence[bytes], acks: Sequence[bytes]) -> bytes:
    """The answer to an FHS/BHS batch (chapter 2.10.3): the same envelope, sender and receiver
    swapped, FHS-12/BHS-12 referring to the batch's own control id (FHS-11/BHS-11), around
    the ACKs of its messages; BTS-1 counts them, FTS-1 counts the batches."""
    lines: list[bytes] = []
    for line in batch:
        text = line.decode("latin-1")
        separator = text[3:4] or "|"
        fields = text.split(separator)
        fields += [""] * (12 - len(fields))
        name = fields[0]
        answer = [
            name,
            fields[1] or "^~\\&",
            fields[4] or "FHIRHUB",
            fields[5],
            fields[2],
            fields[3],
            _now(),
            "",
            "",
            "",
            _ack_control_id(),
            fields[10],
        ]
        lines.append(separator.join(answer).encode("latin-1"))
    body = b"".join(a if a.endswith(b"\r") else a + b"\r" for a in acks)
    trailer = b""
    if any(line.startswith(b"BHS") for line in batch):
        trailer += b"BTS|%d\r" % len(acks)
    if any(line.startswith(b"FHS") for line in batch):
        trailer += b"FTS|1\r"
    return b"".join(line + b"\r" for line in lines) + body + trailer
