"""Where the DICOM Part 10 files live: one small interface, two backends, chosen by URL
(:func:`.content_stores.open_content_store`).

Every instance is kept under the SHA-256 of its bytes (its *digest*), so the same bytes always
land under the same key, a key never holds other content, and storing an instance twice adds
nothing. The archive (C-STORE, STOW-RS, imports), WADO-RS, C-GET/C-MOVE and rendering only use
this interface, so they work unchanged on either backend:

* no URL (the embedded default) or ``file:///path``: :class:`~.file_store.FileStore`, files
  under ``FHIRHUB_DATA_DIR/dicom/files`` written with temp + rename;
* ``s3://bucket/prefix?endpoint=http://host:9000&region=us-east-1``:
  :class:`~.s3_store.S3Store`, objects in any S3-API server (AWS S3, MinIO, Ceph RGW, ...), the
  scale-out path (several API processes share one archive).

Both give the same guarantee the archive's crash recovery relies on: a key is either absent or
holds the complete bytes (rename on POSIX, a single PUT on S3), never part of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO, Protocol

HASH = "sha256"
_HEX = frozenset("0123456789abcdef")


class StoreUnavailable(OSError):
    """The store cannot be reached or refused the request (server down, timeout, credentials,
    missing bucket). An ``OSError``, so the archive answers C-STORE with 0xA700 (out of
    resources: the sender may retry later) exactly as for a full disk. Messages never carry
    credentials."""


def check_digest(digest: str) -> str:
    """A key is a lower-case sha256 hex digest and nothing else (no path tricks)."""
    if len(digest) != 64 or not _HEX.issuperset(digest):
        raise ValueError(f"Not a sha256 hex digest: {digest!r}")
    return digest


def digest_path(digest: str) -> str:
    """``sha256/ab/cd/<digest>.dcm``: the relative key of a digest, shared by both backends
    (two levels of fan-out keep directories small; object stores don't mind)."""
    check_digest(digest)
    return f"{HASH}/{digest[:2]}/{digest[2:4]}/{digest}.dcm"


class ContentStore(Protocol):
    """What the archive needs from a store of Part 10 files keyed by digest."""

    def put(self, data: bytes) -> str:
        """Store ``data`` whole or not at all; return its hex digest. Idempotent: the same
        bytes again leave the store as it was. Raises ``OSError`` (:class:`StoreUnavailable`
        for a remote store) when nothing could be stored."""
        ...

    def get(self, digest: str) -> bytes:
        """The stored bytes; ``FileNotFoundError`` if absent."""
        ...

    def open(self, digest: str) -> BinaryIO:
        """A readable binary file object over the stored bytes (close it after use)."""
        ...

    def exists(self, digest: str) -> bool: ...

    def delete(self, digest: str) -> None:
        """Remove the bytes (absent already: no error)."""
        ...

    def stored(self) -> Iterator[tuple[str, int]]:
        """Every stored ``(digest, size)``, for rebuilding the catalogue."""
        ...

    def check(self) -> bool:
        """Health: the store can be reached now."""
        ...

    def describe(self) -> str:
        """Where the files go, for logs and errors; never includes credentials."""
        ...

    def close(self) -> None: ...
