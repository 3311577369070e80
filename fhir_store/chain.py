"""Tamper evidence for the version log: a hash chain over its rows and signed chain heads.

Every row of ``resource_version`` stores 64 bytes in ``hash``: the row's own *digest* (SHA-256
over an unambiguous encoding of its fields and content) followed by its *link*, SHA-256 over
the previous row's link and this digest. The link of the newest row is the *head*: it commits
to the whole log before it, in order. Keeping the digest next to the link lets the verifier say
which of two things went wrong at a row:

* the digest no longer matches the row: its content or fields were altered;
* the digest matches but the link does not follow from the previous row's link: the row that
  used to precede it was deleted, or rows were reordered (the verifier then looks for the
  original predecessor elsewhere in the log to tell which).

``seq`` is not hashed: PostgreSQL sequences can skip numbers after a rollback, and order is
already fixed by the links. A chain alone does not stop someone who rewrites every row from a
point to the end, nor one who cuts the tail off; so the head is signed periodically with the
server's Ed25519 key (``chain_signature``), and the verifier checks that every signed head is
still in the log and still has the hash that was signed.

Appending happens in :meth:`fhirhub.fhir_store.store.UnitOfWork.flush`, the only place rows
are inserted, while it holds the log's write lock (SQLite's single writer, PostgreSQL's
advisory lock), so reading the previous head there is race-free.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey
from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError

from fhirhub.fhir_store.database import is_sqlite
from fhirhub.fhir_store.driver import fetch_first
from fhirhub.fhir_store.schema import chain_signature, resource_version

HASH_SIZE = 32
#: What ``resource_version.hash`` holds: digest (32 bytes) then link (32 bytes).
STORED_SIZE = 2 * HASH_SIZE
#: The link "before" the first row.
GENESIS = bytes(HASH_SIZE)

# Domain-separation tags: a digest can never be mistaken for a link or a signed message.
_ENTRY_TAG = b"fhirhub:log-entry:v1\x00"
_LINK_TAG = b"fhirhub:log-link:v1\x00"
_HEAD_TAG = b"fhirhub:chain-head:v1\x00"
_NONE = b"\x00"
_INTS = struct.Struct(">qq?")
_LENGTH = struct.Struct(">BQ")


def _field(value: bytes | None) -> bytes:
    """Length-prefixed bytes, with a distinct marker for None (so "" and None differ)."""
    if value is None:
        return _NONE
    return _LENGTH.pack(1, len(value)) + value


def entry_digest(
    resource_type: str,
    resource_id: str,
    version_id: int,
    last_updated: int,
    method: str,
    deleted: bool,
    tenant: str | None,
    content: bytes | None,
) -> bytes:
    """SHA-256 over one log row's fields (everything but ``seq`` and ``hash``)."""
    digest = hashlib.sha256(_ENTRY_TAG)
    digest.update(
        _INTS.pack(version_id, last_updated, bool(deleted))
        + _field(resource_type.encode())
        + _field(resource_id.encode())
        + _field(method.encode())
        + _field(None if tenant is None else tenant.encode())
        + (_NONE if content is None else _LENGTH.pack(1, len(content)))
    )
    if content is not None:
        digest.update(content)
    return digest.digest()


def chain_link(previous_link: bytes, digest: bytes) -> bytes:
    """The link of a row: SHA-256 over the previous row's link and this row's digest."""
    return hashlib.sha256(_LINK_TAG + previous_link + digest).digest()


def previous_link(stored: bytes | None) -> bytes:
    """The link to chain the next row to, from the newest row's stored hash (None: empty log).

    A row without a proper hash (written before hashing existed and never backfilled) is
    reported by the verifier; new rows then chain from the genesis value.
    """
    if stored is None or len(stored) != STORED_SIZE:
        return GENESIS
    return stored[HASH_SIZE:]


_HEAD_LINK_SQL = f"SELECT hash FROM {resource_version.name} ORDER BY seq DESC LIMIT 1"


def read_head_link(conn: Connection) -> bytes:
    """The newest row's link (one indexed lookup); the caller holds the log's write lock."""
    row = fetch_first(conn, _HEAD_LINK_SQL)
    return previous_link(row[0] if row is not None else None)


def hash_rows(previous: bytes, rows: list[dict[str, Any]]) -> bytes:
    """Set ``rows[i]["hash"]`` for rows about to be appended in this order; returns the new
    head link. ``rows`` are the insert dictionaries of :meth:`UnitOfWork.flush`."""
    link = previous
    for row in rows:
        digest = entry_digest(
            row["resource_type"],
            row["resource_id"],
            row["version_id"],
            row["last_updated"],
            row["method"],
            row["deleted"],
            row["tenant"],
            row["content"],
        )
        link = chain_link(link, digest)
        row["hash"] = digest + link
    return link


# -- keys and signed heads ---------------------------------------------------------------------


def key_id(verify_key: VerifyKey) -> str:
    """A short fingerprint of a public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(bytes(verify_key)).hexdigest()[:16]


def head_message(seq: int, head: bytes, signed_at: int) -> bytes:
    """What the server signs: the head link together with the row it belongs to and when."""
    return _HEAD_TAG + struct.pack(">qq", seq, signed_at) + head


@dataclass(frozen=True)
class SignedHead:
    seq: int
    head_hash: bytes
    key_id: str
    signed_at: int  # microseconds since epoch, UTC
    signature: bytes = b""

    def verifies(self, keys: Mapping[str, VerifyKey]) -> bool:
        """Whether a trusted key made this signature over this head."""
        key = keys.get(self.key_id)
        if key is None:
            return False
        try:
            key.verify(head_message(self.seq, self.head_hash, self.signed_at), self.signature)
        except BadSignatureError:
            return False
        return True


@dataclass(frozen=True)
class Trust:
    """What a verifier trusts besides the database: the public keys of the signers, the signed
    heads anchored outside the database (an append-only file, a witness), and how old the
    newest signature may be while entries after it are unsigned (None: any age)."""

    keys: Mapping[str, VerifyKey] = field(default_factory=dict)
    anchored: tuple[SignedHead, ...] = ()
    max_unsigned_age: float | None = None


def sign_head(engine: Engine, signing_key: SigningKey, *, force: bool = False) -> SignedHead | None:
    """Sign the current head of the log and store the signature.

    Returns the new signed head; None when the log is empty, or when the head is already
    signed (unless ``force``) or was signed at the same moment by another process.
    """
    options = {"sqlite_begin": "IMMEDIATE"} if is_sqlite(engine) else {}
    with engine.connect().execution_options(**options) as conn:
        try:
            with conn.begin():
                head = conn.execute(
                    select(resource_version.c.seq, resource_version.c.hash)
                    .order_by(resource_version.c.seq.desc())
                    .limit(1)
                ).first()
                if head is None or head[1] is None or len(head[1]) != STORED_SIZE:
                    return None
                seq, link = int(head[0]), bytes(head[1][HASH_SIZE:])
                signed = conn.execute(
                    select(chain_signature.c.seq).where(chain_signature.c.seq == seq)
                ).first()
                if signed is not None and not force:
                    return None
                if signed is not None:
                    conn.execute(chain_signature.delete().where(chain_signature.c.seq == seq))
                signed_at = time.time_ns() // 1000
                signature = signing_key.sign(head_message(seq, link, signed_at)).signature
                kid = key_id(signing_key.verify_key)
                conn.execute(
                    insert(chain_signature).values(
                        seq=seq,
                        head_hash=link,
                        signature=signature,
                        key_id=kid,
                        signed_at=signed_at,
                    )
                )
        except IntegrityError:
            return None  # another process signed this head first
    return SignedHead(seq, link, kid, signed_at, signature)


# -- verification ------------------------------------------------------------------------------

#: Kinds of problem the verifier names.
ALTERED = "altered"  # the row's fields or content differ from what was hashed
DELETED = "deleted"  # the row that preceded this one is gone
REORDERED = "reordered"  # this row was moved: its original predecessor is elsewhere
INSERTED = "inserted"  # this row was first in the log when written; rows were put before it
UNHASHED = "unhashed"  # no (or a malformed) hash stored
SIGNATURE_INVALID = "signature-invalid"  # a signature or its signed hash does not verify
SIGNED_HEAD_MISSING = "signed-head-missing"  # a signed row is no longer in the log
UNKNOWN_KEY = "unknown-key"  # signed by a key this verifier does not trust
ANCHOR_MISMATCH = "anchor-mismatch"  # the log differs from a head anchored outside the database
ANCHOR_MISSING = "anchor-missing"  # an anchored head's entry is no longer in the log
SIGNATURE_REMOVED = "signature-removed"  # an anchored head has no signature in the database
ANCHOR_INVALID = "anchor-invalid"  # an anchor line whose signature does not verify
STALE_SIGNATURE = "stale-signature"  # entries older than allowed are not covered by a signature

#: Problems about signatures and anchors (the rest are about the chain of digests and links).
SIGNATURE_PROBLEMS = frozenset(
    {
        SIGNATURE_INVALID,
        SIGNED_HEAD_MISSING,
        UNKNOWN_KEY,
        ANCHOR_MISMATCH,
        ANCHOR_MISSING,
        SIGNATURE_REMOVED,
        ANCHOR_INVALID,
        STALE_SIGNATURE,
    }
)


@dataclass(frozen=True)
class Problem:
    kind: str
    seq: int
    reference: str | None  # "Patient/p1/_history/2" of the log row, when there is one
    detail: str

    def describe(self) -> str:
        where = f"seq {self.seq}" + (f" ({self.reference})" if self.reference else "")
        return f"{self.kind} at {where}: {self.detail}"


@dataclass
class Report:
    """The result of :func:`verify_chain`."""

    entries: int = 0
    signatures: int = 0
    head_seq: int | None = None
    head_hash: bytes | None = None
    last_signed_seq: int | None = None
    problems: list[Problem] = field(default_factory=list)
    truncated: bool = False  # more problems than were kept
    #: Entries after the last signed head: their order is covered by the chain, but cutting
    #: them off the end would go unnoticed until the next signature.
    unsigned_entries: int = 0
    #: Heads anchored outside the database that were compared with the log.
    anchored: int = 0

    @property
    def intact(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def summary(self) -> str:
        head = "empty log" if self.head_seq is None else f"head at seq {self.head_seq}"
        signed = (
            "no signed head"
            if self.last_signed_seq is None
            else f"last signed head at seq {self.last_signed_seq}"
        )
        state = "intact" if self.intact else f"{len(self.problems)} problem(s)"
        return f"{self.entries} entries, {self.signatures} signatures, {head}, {signed}: {state}"


_ROW_COLUMNS = (
    resource_version.c.seq,
    resource_version.c.resource_type,
    resource_version.c.resource_id,
    resource_version.c.version_id,
    resource_version.c.last_updated,
    resource_version.c.method,
    resource_version.c.deleted,
    resource_version.c.tenant,
    resource_version.c.content,
    resource_version.c.hash,
)
_SIGNATURE_COLUMNS = (
    chain_signature.c.seq,
    chain_signature.c.head_hash,
    chain_signature.c.signature,
    chain_signature.c.key_id,
    chain_signature.c.signed_at,
)


def _chunks(conn: Connection, columns: tuple[Any, ...], seq: Any, size: int) -> Iterator[Any]:
    """Rows in ``seq`` order, fetched by keyset pages so memory stays bounded on both
    backends (no server-side cursor needed)."""
    last: int | None = None
    while True:
        query = select(*columns).order_by(seq).limit(size)
        if last is not None:
            query = query.where(seq > last)
        rows = conn.execute(query).all()
        yield from rows
        if len(rows) < size:
            return
        last = rows[-1][0]


def _reference(row: Any) -> str:
    return f"{row[1]}/{row[2]}/_history/{row[3]}"


def _digest_of(row: Any) -> bytes:
    content = row[8]
    return entry_digest(
        row[1],
        row[2],
        int(row[3]),
        int(row[4]),
        row[5],
        bool(row[6]),
        row[7],
        bytes(content) if content is not None else None,
    )


def verify_chain(
    engine: Engine,
    verify_keys: Mapping[str, VerifyKey] | None = None,
    *,
    chunk: int = 2000,
    max_problems: int = 50,
    trust: Trust | None = None,
) -> Report:
    """Check the whole log and every signed head, streaming rows in ``seq`` order.

    ``verify_keys`` maps key ids to the public keys trusted for signatures (a signature by any
    other key is a problem). Problems are listed in ``seq`` order; the first one is the first
    bad entry. Each row is checked against the stored link of the row before it, so one
    tampered row does not hide later, independent ones. ``trust`` adds the heads anchored
    outside the database (each must still be in the log with the same hash, and still be
    signed in it) and the most an unsigned entry may age.
    """
    with engine.connect() as conn, conn.begin():
        return verify_on(conn, verify_keys, chunk=chunk, max_problems=max_problems, trust=trust)


def verify_on(
    conn: Connection,
    verify_keys: Mapping[str, VerifyKey] | None = None,
    *,
    chunk: int = 2000,
    max_problems: int = 50,
    trust: Trust | None = None,
) -> Report:
    """:func:`verify_chain` on the caller's connection and transaction (``fhirhub replay``
    verifies the very snapshot it copies)."""
    keys = dict(verify_keys or {})
    if trust is not None:
        keys.update(trust.keys)
    anchors = iter(_distinct_anchors(trust.anchored if trust is not None else ()))
    pending_anchor = next(anchors, None)
    first_unsigned: tuple[int, int] | None = None  # (seq, last_updated) of the oldest
    report = Report()
    signatures = _chunks(conn, _SIGNATURE_COLUMNS, chain_signature.c.seq, chunk)
    pending_signature = next(signatures, None)
    previous = GENESIS
    broken_at: list[tuple[int, str, bytes, bytes]] = []  # (seq, ref, digest, link)

    def add(problem: Problem) -> None:
        if len(report.problems) < max_problems:
            report.problems.append(problem)
        else:
            report.truncated = True

    def check_signature(signature: Any, link: bytes | None, reference: str | None) -> None:
        seq, head_hash, sig, kid, signed_at = signature
        report.signatures += 1
        report.last_signed_seq = int(seq)
        if link is None:
            add(
                Problem(
                    SIGNED_HEAD_MISSING,
                    int(seq),
                    None,
                    "a signed head is no longer in the log: the entry was deleted "
                    "(or the log was cut back)",
                )
            )
            return
        key = keys.get(kid)
        if key is None:
            add(Problem(UNKNOWN_KEY, int(seq), reference, f"signed by unknown key {kid}"))
            return
        try:
            key.verify(head_message(int(seq), bytes(head_hash), int(signed_at)), bytes(sig))
        except BadSignatureError:
            add(
                Problem(
                    SIGNATURE_INVALID,
                    int(seq),
                    reference,
                    f"the signature by key {kid} does not verify",
                )
            )
            return
        if bytes(head_hash) != link:
            add(
                Problem(
                    SIGNATURE_INVALID,
                    int(seq),
                    reference,
                    "the signed head hash differs from the entry's hash: "
                    "the log was rewritten up to here",
                )
            )

    def check_anchor(anchor: SignedHead, link: bytes | None, signed: bool, ref: str | None) -> None:
        report.anchored += 1
        if not anchor.verifies(keys):
            add(
                Problem(
                    ANCHOR_INVALID,
                    anchor.seq,
                    ref,
                    f"the anchored head's signature (key {anchor.key_id}) does not verify",
                )
            )
        elif link is None:
            add(
                Problem(
                    ANCHOR_MISSING,
                    anchor.seq,
                    None,
                    "a head anchored outside the database is no longer in the log: "
                    "the entry was deleted (or the log was cut back)",
                )
            )
        elif link != anchor.head_hash:
            add(
                Problem(
                    ANCHOR_MISMATCH,
                    anchor.seq,
                    ref,
                    "the entry's hash differs from the head anchored outside the database: "
                    "the log was rewritten up to here",
                )
            )
        elif not signed:
            add(
                Problem(
                    SIGNATURE_REMOVED,
                    anchor.seq,
                    ref,
                    "a head anchored outside the database has no signature in it: "
                    "signatures were deleted",
                )
            )

    for row in _chunks(conn, _ROW_COLUMNS, resource_version.c.seq, chunk):
        seq = int(row[0])
        while pending_signature is not None and pending_signature[0] < seq:
            check_signature(pending_signature, None, None)
            pending_signature = next(signatures, None)
        while pending_anchor is not None and pending_anchor.seq < seq:
            check_anchor(pending_anchor, None, False, None)
            pending_anchor = next(anchors, None)
        report.entries += 1
        report.unsigned_entries += 1
        if first_unsigned is None:
            first_unsigned = (seq, int(row[4]))
        report.head_seq = seq
        stored = row[9]
        reference = _reference(row)
        if stored is None or len(stored) != STORED_SIZE:
            add(Problem(UNHASHED, seq, reference, "the entry has no valid hash"))
            previous = GENESIS
            link: bytes | None = None
        else:
            stored = bytes(stored)
            digest, link = stored[:HASH_SIZE], stored[HASH_SIZE:]
            if _digest_of(row) != digest:
                add(
                    Problem(
                        ALTERED,
                        seq,
                        reference,
                        "the entry's content or fields differ from what was hashed",
                    )
                )
            elif chain_link(previous, digest) != link:
                broken_at.append((seq, reference, digest, link))
                add(Problem(DELETED, seq, reference, ""))  # refined below
            previous = link
        report.head_hash = link
        signed = pending_signature is not None and pending_signature[0] == seq
        if pending_signature is not None and signed:
            report.unsigned_entries = 0
            first_unsigned = None
            check_signature(pending_signature, link, reference)
            pending_signature = next(signatures, None)
        if pending_anchor is not None and pending_anchor.seq == seq:
            check_anchor(pending_anchor, link, signed, reference)
            pending_anchor = next(anchors, None)
    while pending_signature is not None:
        check_signature(pending_signature, None, None)
        pending_signature = next(signatures, None)
    while pending_anchor is not None:
        check_anchor(pending_anchor, None, False, None)
        pending_anchor = next(anchors, None)
    age = trust.max_unsigned_age if trust is not None else None
    if age is not None and first_unsigned is not None:
        oldest_seq, written = first_unsigned
        if time.time_ns() // 1000 - written > age * 1_000_000:
            add(
                Problem(
                    STALE_SIGNATURE,
                    oldest_seq,
                    None,
                    f"{report.unsigned_entries} entries from seq {oldest_seq} on are older than "
                    f"{age:g} s and no signed head covers them (signatures deleted, or the "
                    "signer stopped; check, then `fhirhub sign-head`)",
                )
            )
    if broken_at:
        _explain_broken_links(conn, report, broken_at, chunk)
    return report


def _distinct_anchors(anchored: tuple[SignedHead, ...]) -> list[SignedHead]:
    """Anchored heads in ``seq`` order, one per ``seq`` (the newest signature of a head that
    was signed again with ``force``)."""
    by_seq: dict[int, SignedHead] = {}
    for head in anchored:
        known = by_seq.get(head.seq)
        if known is None or head.signed_at > known.signed_at:
            by_seq[head.seq] = head
    return [by_seq[seq] for seq in sorted(by_seq)]


def _explain_broken_links(
    conn: Connection, report: Report, broken: list[tuple[int, str, bytes, bytes]], chunk: int
) -> None:
    """For rows whose link does not follow from their predecessor, find where the original
    predecessor is now (one more pass over the stored links, only when something broke)."""
    wanted = {seq: (digest, link) for seq, _, digest, link in broken}
    found: dict[int, int] = {}  # broken seq -> seq of its original predecessor
    for seq, (digest, link) in wanted.items():
        if chain_link(GENESIS, digest) == link:
            found[seq] = 0
    columns = (resource_version.c.seq, resource_version.c.hash)
    for row in _chunks(conn, columns, resource_version.c.seq, chunk):
        stored = row[1]
        if stored is None or len(stored) != STORED_SIZE:
            continue
        candidate = bytes(stored[HASH_SIZE:])
        for seq, (digest, link) in wanted.items():
            if seq not in found and chain_link(candidate, digest) == link:
                found[seq] = int(row[0])
    for index, problem in enumerate(report.problems):
        if problem.kind != DELETED or problem.detail:
            continue
        origin = found.get(problem.seq)
        if origin is None:
            detail = (
                "the entry's original predecessor is no longer in the log: "
                "an entry before this one was deleted"
            )
            kind = DELETED
        elif origin == 0:
            detail = "the entry was first in the log when written: entries were inserted before it"
            kind = INSERTED
        else:
            detail = f"the entry was written right after seq {origin}: entries were reordered"
            kind = REORDERED
        report.problems[index] = Problem(kind, problem.seq, problem.reference, detail)
