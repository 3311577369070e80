"""HL7 v2 messages in, their acknowledgments out: parse, convert, commit, ACK.

The ACKs are released only after the transaction committed (chapter 2.9: an AA promises the
receiver has taken responsibility). Every outcome other than AA also stores a dead letter
first, so an AE/AR never means "dropped". A message whose (sender, MSH-10) was already
processed is acknowledged AA without touching the store again: its Provenance, whose id is
derived from that pair, exists.

Group commit: :func:`handle_many` processes several messages, in order, in ONE transaction
(:func:`fhirhub.sdk.transaction`), each inside its own savepoint (``Transaction.savepoint``). A message that fails rolls back alone (its dead
letter is written in its place) while its neighbours commit; on SQLite, where commits are
serialised, this turns N lock acquisitions and commits into one. Each message's conditional
entries are resolved on the transaction's connection after the previous message's writes were
flushed, so two messages about the same patient in one group behave exactly as if they had
been committed one after the other. If the group's commit itself fails nothing of it was
stored, and every message is retried on its own.

Tenancy: each message is processed as the system acting for its sender's tenant
(:mod:`fhirhub.adapters.hl7.senders`), so a group may hold messages of several tenants, each
confined to its own. A sender that is refused gets AR and leaves no dead letter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import orjson

from fhirhub.adapters.hl7.ack import ErrorLocation, Header, acknowledgments
from fhirhub.adapters.hl7.convert import ConversionError, convert_message, message_key
from fhirhub.adapters.hl7.dead_letters import (
    dead_letter_bundle,
    dead_letter_id,
    store_dead_letter,
    write_to_disk,
)
from fhirhub.adapters.hl7.keep_stored import apply_keep_stored
from fhirhub.adapters.hl7.parsing import Hl7ParseError, Message, parse, split_messages
from fhirhub.adapters.hl7.senders import (
    OPERATOR,
    Feed,
    Refusal,
    Source,
    sender_directory,
    sender_of,
)
from fhirhub.sdk import FhirError, Hub, Transaction, acting_as, snapshot, transaction

if TYPE_CHECKING:
    from fhirhub.adapters.hl7.convert_pool import Prepared

log = logging.getLogger("fhirhub.hl7")
_T = TypeVar("_T")

#: Largest message accepted (bytes); bigger ones are rejected (AR) and dead-lettered.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

#: Most messages committed in one transaction: bounds the time the SQLite write lock is held
#: (and the work redone one by one if a group's commit fails).
MAX_GROUP = 32

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
    "Specimen": "SPM",
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
    #: Fields stored other than sent (coerced or dropped): ERR segments, severity W, in the AA.
    warnings: list[ErrorLocation] = field(default_factory=list)

    @property
    def ack(self) -> bytes:
        """The application ACK (or the only ACK sent); empty when the sender wants none."""
        return self.acks[-1] if self.acks else b""


class _OtherTenant(Exception):
    """The key is taken by a message another tenant's feed sent."""


def _stored_text(tx: Transaction, key: str, tenant: str | None = None) -> str | None:
    """The normalised text of the message recorded under ``key``, or None if none was (its
    Provenance, whose id is the key, is the duplicate check of every message). Raises
    :class:`_OtherTenant` when a feed for ``tenant`` finds another tenant's message there."""
    import base64

    provenance = tx.current("Provenance", key)
    if provenance is None or provenance.deleted:
        return None
    if tenant is not None and provenance.tenant != tenant:
        raise _OtherTenant(key)
    binary = tx.current("Binary", key)
    if binary is None or binary.content is None:
        return ""
    data = base64.b64decode(orjson.loads(binary.content).get("data", ""))
    try:
        return parse(data).text
    except Hl7ParseError:
        return ""


def resolve_key(
    hub: Hub, message: Message, tx: Transaction | None = None, tenant: str | None = None
) -> tuple[str, bool]:
    """``(key, duplicate)`` for ``message`` fed for ``tenant``, read in ``tx`` (default: a
    fresh snapshot).

    The same (sender, MSH-10) with the same content is a retransmission: acknowledge, do not
    re-process (chapter 2.9.2, MSH-10 uniqueness). The same pair with *different* content is
    a sender reusing control ids: it is processed under a content-qualified key, so neither
    message is lost or mistaken for the other. A key another tenant's feed already holds
    (two hospitals whose senders share a name) is never taken for a duplicate: the message
    gets a key qualified by its own tenant.
    """
    if tx is None:
        with snapshot(hub) as reading:
            return resolve_key(hub, message, reading, tenant)
    key = message_key(message)
    try:
        stored = _stored_text(tx, key, tenant)
    except _OtherTenant:
        key = message_key(message, tenant=tenant)
        stored = _stored_text(tx, key)
    if stored is None:
        return key, False
    if stored == message.text:
        return key, True
    qualified = message_key(message, qualified=True, tenant=tenant)
    log.warning(
        "HL7 %s reuses MSH-10 %s with different content", message.sender, message.control_id
    )
    try:
        return qualified, _stored_text(tx, qualified, tenant) is not None
    except _OtherTenant:  # a pre-tenancy key of another tenant's: qualify by tenant as well
        qualified = message_key(message, qualified=True, tenant=tenant or "-")
        return qualified, _stored_text(tx, qualified) is not None


def already_processed(hub: Hub, message: Message, tenant: str | None = None) -> bool:
    return resolve_key(hub, message, tenant=tenant)[1]


@dataclass
class DeadLetter:
    """What a failed message leaves behind (stored with the group, or on its own)."""

    raw: bytes
    reason: str
    ack_code: str
    description: str
    feed: Feed

    def admitted(self, hub: Hub) -> bool:
        """Whether the feed's dead-letter quota takes this one (see ``dead_letters_per_hour``)."""
        if sender_directory(hub).quota.take(self.feed.tenant or f"@{self.feed.sender}"):
            return True
        log.warning(
            "HL7 dead-letter quota of %s spent: %s not stored (%s)",
            self.feed.tenant or self.feed.sender,
            dead_letter_id(self.raw, self.feed.tenant),
            self.reason,
        )
        return False

    def store(self, hub: Hub) -> bool:
        """Store it in a transaction of its own; False if the feed's quota did not take it."""
        if not self.admitted(hub):
            return False
        with acting_as(self.feed.access):
            store_dead_letter(
                hub,
                self.raw,
                reason=self.reason,
                ack_code=self.ack_code,
                description=self.description,
                tenant=self.feed.tenant,
            )
        return True


def _admit(hub: Hub, sender: str, source: Source) -> Feed | Refusal:
    return sender_directory(hub).resolve(sender, source)


def _salvaged_feed(hub: Hub, header: Header, source: Source) -> Feed | Refusal:
    """The feed of a message too broken to parse, from its salvaged MSH."""
    return _admit(hub, sender_of(header.sending_app, header.sending_facility), source)


def _refused(header: Header, refusal: Refusal, message: Message | None) -> Outcome:
    """AR for a sender kept out; nothing of it is stored, not even a dead letter."""
    log.warning("HL7 AR: %s (MSH-10 %s)", refusal.text, header.control_id or "-")
    where = ErrorLocation("207", refusal.text, "MSH", 1, refusal.field)
    return Outcome("AR", acknowledgments(header, "AR", where.text, where), message, refusal.text)


def _failure(
    raw: bytes,
    header: Header,
    code: str,
    location: ErrorLocation,
    message: Message | None,
    description: str,
    feed: Feed,
) -> tuple[Outcome, DeadLetter]:
    reason = f"{location.segment}-{location.field or ''}: {location.text}".replace("-:", ":")
    log.warning("HL7 %s %s: %s", code, description, reason)
    outcome = Outcome(
        code,
        acknowledgments(header, code, location.text, location),
        message,
        location.text,
        dead_letter=dead_letter_id(raw, feed.tenant),
    )
    return outcome, DeadLetter(raw, reason, code, description, feed)


def _process(
    hub: Hub,
    tx: Transaction,
    raw: bytes,
    check_duplicates: bool,
    prepared: Prepared | None = None,
    source: Source = OPERATOR,
) -> tuple[Outcome, DeadLetter | None]:
    """Parse, admit, convert and write one message in ``tx``; a failure is returned, not
    raised. ``prepared``: a worker's conversion of ``raw`` for its default key
    (:mod:`fhirhub.adapters.hl7.convert_pool`), used when finished and that is the key."""
    if len(raw) > MAX_MESSAGE_BYTES:
        header = Header.salvage(raw)
        feed = _salvaged_feed(hub, header, source)
        if isinstance(feed, Refusal):
            return _refused(header, feed, None), None
        where = ErrorLocation(
            "207", f"Message of {len(raw)} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes"
        )
        return _failure(raw, header, "AR", where, None, "oversized message", feed)
    try:
        message = parse(raw)
    except Hl7ParseError as error:
        header = Header.salvage(raw)
        feed = _salvaged_feed(hub, header, source)
        if isinstance(feed, Refusal):
            return _refused(header, feed, None), None
        where = ErrorLocation(error.code, str(error), error.segment, error.sequence, error.field)
        description = f"unparseable message {header.control_id or '(no MSH-10)'}"
        return _failure(raw, header, "AR", where, None, description, feed)
    header = Header.of(message)
    feed = _admit(hub, message.sender, source)
    if isinstance(feed, Refusal):
        return _refused(header, feed, message), None
    with acting_as(feed.access):
        return _process_admitted(hub, tx, raw, message, header, feed, check_duplicates, prepared)


def _process_admitted(
    hub: Hub,
    tx: Transaction,
    raw: bytes,
    message: Message,
    header: Header,
    feed: Feed,
    check_duplicates: bool,
    prepared: Prepared | None,
) -> tuple[Outcome, DeadLetter | None]:
    """The rest of :func:`_process`, as the system acting for the feed's tenant."""
    label = f"{message.message_type} {message.control_id} from {message.sender}"
    key, duplicate = resolve_key(hub, message, tx, feed.tenant)
    if check_duplicates and duplicate:
        log.info("HL7 duplicate %s acknowledged without re-processing", label)
        acks = acknowledgments(header, "AA", "duplicate: already processed")
        return Outcome("AA", acks, message, duplicate=True), None
    try:
        ahead = None
        if prepared is not None:  # the worker converted for the default key only
            if key == message_key(message):
                ahead = prepared.take()
            else:
                prepared.cancel()
        if ahead is not None:
            bundle = orjson.loads(ahead.bundle)
            warnings = [ErrorLocation(*w) for w in orjson.loads(ahead.warnings or b"[]")]
        else:
            converted = convert_message(message, key=key)
            bundle, warnings = converted.bundle, converted.warnings
    except ConversionError as error:
        code = "AR" if error.code in ("200", "201", "203") else "AE"
        return _failure(raw, header, code, error.location, message, label, feed)
    except Exception as error:  # a converter bug must not lose the message
        log.exception("HL7 conversion crashed for %s", label)
        where = ErrorLocation("207", f"Conversion failed: {type(error).__name__}: {error}")
        return _failure(raw, header, "AE", where, message, label, feed)
    entries = list(bundle["entry"])
    try:
        # Conditional entries keyed by identifier are matched together in one index lookup
        # by the SDK's transaction, for this tenant only when the feed writes for one.
        apply_keep_stored(tx, bundle)
        tx.bundle(bundle, validated=ahead is not None and ahead.validated)
    except FhirError as error:
        segment = "MSH"
        if error.entry_index is not None:
            current = bundle["entry"]
            if 0 <= error.entry_index < len(current):
                rtype = current[error.entry_index]["resource"]["resourceType"]
                segment = SOURCE_SEGMENT.get(rtype, "MSH")
        where = ErrorLocation("207", f"FHIR store refused the data: {error.message}", segment)
        return _failure(raw, header, "AE", where, message, label, feed)
    except Exception as error:
        log.exception("HL7 commit failed for %s", label)
        where = ErrorLocation("207", f"Commit failed: {type(error).__name__}: {error}")
        return _failure(raw, header, "AE", where, message, label, feed)
    for warning in warnings:
        log.info("HL7 %s stored with a warning: %s", label, warning.text)
    acks = acknowledgments(header, "AA", warnings=warnings)
    return Outcome("AA", acks, message, bundle_entries=len(entries), warnings=warnings), None


def _in_savepoint(batch: Transaction, work: Callable[[Transaction], _T]) -> _T:
    """Run ``work`` in a savepoint of the group's transaction: its writes join the group's
    on success and are rolled back on any error."""
    with batch.savepoint() as inner:
        return work(inner)


def _commit_failure(
    hub: Hub, raw: bytes, message: Message | None, error: Exception, source: Source
) -> tuple[Outcome, DeadLetter | None]:
    """AE for a message whose writes could not be committed (driver, flush, lock)."""
    header = Header.of(message) if message is not None else Header.salvage(raw)
    feed = (
        _admit(hub, message.sender, source)
        if message is not None
        else _salvaged_feed(hub, header, source)
    )
    if isinstance(feed, Refusal):
        return _refused(header, feed, message), None
    where = ErrorLocation("207", f"Commit failed: {type(error).__name__}: {error}")
    return _failure(raw, header, "AE", where, message, "commit failed", feed)


def _handle_in(
    hub: Hub,
    batch: Transaction,
    raw: bytes,
    check_duplicates: bool,
    prepared: Prepared | None,
    source: Source,
) -> tuple[Outcome, DeadLetter | None]:
    """One message of a group: its writes, or its dead letter, each in a savepoint."""

    def attempt(tx: Transaction) -> tuple[Outcome, DeadLetter | None]:
        result = _process(hub, tx, raw, check_duplicates, prepared, source)
        if result[1] is not None:
            raise _Rejected(result)
        return result

    try:
        return _in_savepoint(batch, attempt)
    except _Rejected as rejected:
        outcome, found = rejected.result
    except Exception as error:  # the savepoint itself failed (flush, driver): AE
        log.exception("HL7 commit failed for a message")
        outcome, found = _commit_failure(hub, raw, None, error, source)
    if found is None:
        return outcome, None
    letter = found
    if not letter.admitted(hub):
        outcome.dead_letter = None
        return outcome, None

    def record(tx: Transaction) -> None:
        _, bundle = dead_letter_bundle(
            letter.raw,
            reason=letter.reason,
            ack_code=letter.ack_code,
            description=letter.description,
            tenant=letter.feed.tenant,
        )
        with acting_as(letter.feed.access):
            tx.bundle(bundle)

    try:
        _in_savepoint(batch, record)
    except Exception as error:  # the store cannot take it: the bytes go to disk
        write_to_disk(hub, letter.raw, letter.reason, error)
        return outcome, None
    log.warning("HL7 message dead-lettered as Task/%s: %s", outcome.dead_letter, letter.reason)
    return outcome, letter


def _handle_alone(
    hub: Hub,
    raw: bytes,
    check_duplicates: bool,
    prepared: Prepared | None,
    source: Source,
) -> Outcome:
    """One message in a transaction of its own, without the savepoint a group gives each
    message: a lone feed (one connection waiting for each ACK) sends every message this way,
    and SAVEPOINT/RELEASE were about 4% of an ADT^A01's cost. A failure rolls the whole
    transaction back and the dead letter is stored in a second one."""
    processed: Outcome | None = None
    try:
        with transaction(hub) as tx:
            processed, letter = _process(hub, tx, raw, check_duplicates, prepared, source)
            if letter is not None:
                raise _Rejected((processed, letter))
        return processed
    except _Rejected as rejected:
        outcome, found = rejected.result
    except Exception as error:  # the commit (or a flush) failed: nothing of it is stored
        log.exception("HL7 commit failed")
        message = processed.message if processed is not None else None
        outcome, found = _commit_failure(hub, raw, message, error, source)
    if found is not None and not found.store(hub):
        outcome.dead_letter = None
    return outcome


class _Rejected(Exception):
    """Carries a failed message's outcome out of its savepoint (which rolls back)."""

    def __init__(self, result: tuple[Outcome, DeadLetter | None]) -> None:
        super().__init__("message rejected")
        self.result = result


def handle_many(
    hub: Hub,
    raws: Sequence[bytes],
    *,
    check_duplicates: bool = True,
    prepared: Sequence[Prepared | None] | None = None,
    sources: Sequence[Source] | None = None,
) -> list[Outcome]:
    """Process ``raws`` in order in one transaction (group commit); one outcome each, all
    final only once this returns, i.e. after the commit. ``prepared``: per message, its
    conversion by a worker process (:mod:`fhirhub.adapters.hl7.convert_pool`), or None.
    ``sources``: per message, where it came from (default: the operator)."""
    if not raws:
        return []
    if len(raws) == 1:
        return [
            _handle_alone(
                hub,
                raws[0],
                check_duplicates,
                prepared[0] if prepared is not None else None,
                sources[0] if sources is not None else OPERATOR,
            )
        ]
    ahead: list[Prepared | None] = list(prepared) if prepared is not None else [None] * len(raws)
    origins: list[Source] = list(sources) if sources is not None else [OPERATOR] * len(raws)
    results: list[tuple[Outcome, DeadLetter | None]] = []
    try:
        with transaction(hub) as batch:
            for raw, bundle, source in zip(raws, ahead, origins, strict=True):
                results.append(_handle_in(hub, batch, raw, check_duplicates, bundle, source))
    except Exception as error:
        if len(raws) > 1:  # nothing of the group is stored: each message on its own
            log.warning("HL7 group commit of %d messages failed (%s); one by one", len(raws), error)
            return [
                handle_many(hub, [raw], check_duplicates=check_duplicates, sources=[source])[0]
                for raw, source in zip(raws, origins, strict=True)
            ]
        log.exception("HL7 commit failed")
        if results and results[0][1] is not None:  # a rejection whose dead letter was lost
            outcome, letter = results[0]
            assert letter is not None
            letter.store(hub)
            return [outcome]
        message = results[0][0].message if results else None
        outcome, failed = _commit_failure(hub, raws[0], message, error, origins[0])
        if failed is not None:
            failed.store(hub)
        return [outcome]
    return [outcome for outcome, _ in results]


def handle(
    hub: Hub, raw: bytes, *, check_duplicates: bool = True, source: Source = OPERATOR
) -> Outcome:
    """Process one message (bytes as received) and return its outcome and ACK(s)."""
    return handle_many(hub, [raw], check_duplicates=check_duplicates, sources=[source])[0]


def process(hub: Hub, raw_bytes: bytes) -> bytes:
    """Process one message; return its application ACK (b"" if the sender asked for none)."""
    return handle(hub, raw_bytes).ack


def process_batch(hub: Hub, raw: bytes, source: Source = OPERATOR) -> list[Outcome]:
    """A single message, several concatenated ones or an FHS/BHS batch (chapter 2.10.3),
    split at each MSH (never merged): one outcome per message, the
    batch's messages committed in groups of at most ``MAX_GROUP`` (so a large batch does not
    hold the SQLite write lock for long)."""
    encoded = split_messages(raw).messages
    if len(encoded) <= 1:
        return [handle(hub, raw, source=source)]
    groups = [encoded[start : start + MAX_GROUP] for start in range(0, len(encoded), MAX_GROUP)]
    return [
        outcome
        for group in groups
        for outcome in handle_many(hub, group, sources=[source] * len(group))
    ]
