"""Optional encryption at rest of resource content, per tenant (envelope encryption).

Off by default (``FHIRHUB_ENCRYPT_AT_REST``). When on, the JSON of every version is sealed
with AES-256-GCM under a data key of its tenant (``content_key``; tenant-less resources share
one) before it reaches the log or the current projection, and each data key is stored wrapped
by the master key, which lives outside the database (a file under the data directory's
``keys/``, 0600, or ``FHIRHUB_ENCRYPTION_KEY_FILE``). A stolen database file or backup then
holds no readable resource content without the master key; destroying a tenant's data key
makes its content unreadable everywhere, backups included (crypto-shredding).

What it does not cover, by design: the search index tables hold normalised values (names,
identifiers, dates) so that search stays an indexed lookup; protect the database volume for
those. The hash chain covers the sealed bytes, so ``fhirhub verify`` needs no key.

Sealed content starts with a NUL byte, which no JSON document does, so reading is one byte
comparison for plain content and every read path works on databases written either way.
Format: ``MAGIC | key id (16 bytes) | nonce (12 bytes) | ciphertext+tag``, the key id being the
AEAD's associated data; a wrapped data key is bound to its key id the same way.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import weakref
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, Engine, insert, select

from fhirhub.fhir_store.errors import FhirError
from fhirhub.fhir_store.schema import content_key

MAGIC = b"\x00fhe1"
KEY_ID_SIZE = 16
NONCE_SIZE = 12
_HEADER = len(MAGIC) + KEY_ID_SIZE + NONCE_SIZE

#: The cipher of each engine that has one (an engine is one database of one hub).
_CIPHERS: weakref.WeakKeyDictionary[Engine, ContentCipher] = weakref.WeakKeyDictionary()


def load_master_key(path: Path) -> bytes:
    """The 32-byte master key in ``path``, created (0600) on first use."""
    if path.exists():
        key = path.read_bytes()
        if len(key) != 32:
            raise ValueError(f"{path} does not hold a 32-byte master key")
        return key
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


class ContentCipher:
    """Seals and opens content for one database with one master key."""

    def __init__(self, engine: Engine, master_key: bytes) -> None:
        self.engine = engine
        self._master = AESGCM(master_key)
        self._keys: dict[bytes, AESGCM] = {}  # key id -> data key
        self._by_tenant: dict[str, bytes] = {}  # tenant ("" = none) -> key id
        self._lock = threading.Lock()

    def attach(self) -> None:
        """Make every read of this engine's content open sealed bodies (see :func:`opened`)."""
        _CIPHERS[self.engine] = self

    # -- sealing (inside the write transaction) ----------------------------------------------
    def seal(self, conn: Connection, tenant: str | None, plain: bytes) -> bytes:
        key_id = self._tenant_key(conn, tenant or "")
        nonce = secrets.token_bytes(NONCE_SIZE)
        return MAGIC + key_id + nonce + self._keys[key_id].encrypt(nonce, plain, key_id)

    def _tenant_key(self, conn: Connection, tenant: str) -> bytes:
        key_id = self._by_tenant.get(tenant)
        if key_id is not None:
            return key_id
        with self._lock:
            row = conn.execute(
                select(content_key.c.key_id, content_key.c.wrapped)
                .where(content_key.c.tenant == tenant)
                .order_by(content_key.c.created.desc())
                .limit(1)
            ).first()
            if row is not None:
                key_id = bytes.fromhex(row[0])
                self._keys[key_id] = AESGCM(self._unwrap(key_id, bytes(row[1])))
            else:
                key_id = secrets.token_bytes(KEY_ID_SIZE)
                data_key = AESGCM.generate_key(bit_length=256)
                nonce = secrets.token_bytes(NONCE_SIZE)
                wrapped = nonce + self._master.encrypt(nonce, data_key, key_id)
                conn.execute(
                    insert(content_key).values(
                        key_id=key_id.hex(),
                        tenant=tenant,
                        wrapped=wrapped,
                        created=time.time_ns() // 1000,
                    )
                )
                self._keys[key_id] = AESGCM(data_key)
            self._by_tenant[tenant] = key_id
            return key_id

    # -- opening (every read path) -------------------------------------------------------------
    def open(self, sealed: bytes) -> bytes:
        key_id = sealed[len(MAGIC) : len(MAGIC) + KEY_ID_SIZE]
        nonce = sealed[len(MAGIC) + KEY_ID_SIZE : _HEADER]
        aead = self._keys.get(key_id) or self._load(key_id)
        try:
            return aead.decrypt(nonce, sealed[_HEADER:], key_id)
        except Exception as exc:
            raise FhirError(
                500, "Stored content failed its integrity check", code="exception"
            ) from exc

    def _load(self, key_id: bytes) -> AESGCM:
        with self.engine.connect() as conn:
            wrapped = conn.execute(
                select(content_key.c.wrapped).where(content_key.c.key_id == key_id.hex())
            ).scalar()
        if wrapped is None:
            raise FhirError(500, "Stored content names an unknown data key", code="exception")
        aead = AESGCM(self._unwrap(key_id, bytes(wrapped)))
        self._keys[key_id] = aead
        return aead

    def _unwrap(self, key_id: bytes, wrapped: bytes) -> bytes:
        try:
            return self._master.decrypt(wrapped[:NONCE_SIZE], wrapped[NONCE_SIZE:], key_id)
        except Exception as exc:
            raise FhirError(
                500, "A data key does not open with this master key", code="exception"
            ) from exc


def is_sealed(content: bytes | memoryview | None) -> bool:
    return content is not None and bytes(content[:1]) == b"\x00"


def opened(conn: Connection | Engine, content: bytes | memoryview | None) -> bytes | None:
    """``content`` as JSON bytes: sealed bodies are opened with the cipher of ``conn``'s
    engine; plain ones (encryption off, or written before it was turned on) pass as they are."""
    if content is None:
        return None
    if bytes(content[:1]) != b"\x00":
        return content if isinstance(content, bytes) else bytes(content)
    engine = conn if isinstance(conn, Engine) else conn.engine
    cipher = _CIPHERS.get(engine)
    if cipher is None:
        raise FhirError(
            500,
            "Stored content is encrypted and this process has no master key "
            "(set FHIRHUB_ENCRYPT_AT_REST and the key file)",
            code="exception",
        )
    return cipher.open(bytes(content))
