"""Signed heads anchored outside the database: an append-only file and an optional witness.

Why: the chain's signatures live in the database they vouch for. Someone who can write to the
database can delete the newest ``chain_signature`` rows, rewrite the log from that point with
recomputed hashes, and the database alone still verifies. Every head the hub signs is therefore
also appended to a file the database cannot rewrite (``anchor_file``, by default
``<data dir>/chain-anchor.ndjson``; ``off`` disables it) and, when ``witness_url`` is set,
POSTed to an external witness; ``fhirhub verify`` requires each anchored head to still be in
the log with the same hash and still be signed there.

The file holds one JSON object per line (``seq``, ``head``, ``signature`` in hex, ``keyId``,
``signedAt`` in microseconds), appended with ``O_APPEND`` and flushed to disk (``fsync``) before
the signing is reported done; a torn last line (a crash mid-write) is skipped with a warning.
Each line is signed, so an edited line fails verification rather than being believed. Keep the
file on another volume, or ship it off the host (the witness), for the anchor to be worth more
than the database's own copy.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import httpx
import orjson

from fhirhub.sdk import SignedHead

log = logging.getLogger("fhirhub.integrity")

DEFAULT_ANCHOR_NAME = "chain-anchor.ndjson"


def head_json(head: SignedHead) -> dict[str, Any]:
    return {
        "seq": head.seq,
        "head": head.head_hash.hex(),
        "signature": head.signature.hex(),
        "keyId": head.key_id,
        "signedAt": head.signed_at,
    }


def head_from_json(data: dict[str, Any]) -> SignedHead:
    return SignedHead(
        seq=int(data["seq"]),
        head_hash=bytes.fromhex(data["head"]),
        key_id=str(data["keyId"]),
        signed_at=int(data["signedAt"]),
        signature=bytes.fromhex(data["signature"]),
    )


class AnchorFile:
    """The append-only file of signed heads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, head: SignedHead) -> None:
        line = orjson.dumps(head_json(head)) + b"\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(descriptor, line)
                os.fsync(descriptor)
            finally:
                os.close(descriptor)

    def read(self) -> tuple[SignedHead, ...]:
        """Every anchored head; malformed lines are skipped with a warning (a torn last line
        after a crash), and a missing file is no heads."""
        try:
            lines = self.path.read_bytes().splitlines()
        except FileNotFoundError:
            return ()
        heads: list[SignedHead] = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                heads.append(head_from_json(orjson.loads(line)))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                log.warning("Skipping malformed line %d of the chain anchor %s", number, self.path)
        return tuple(heads)


class Witness:
    """POSTs each signed head to an external witness URL (JSON, see :func:`head_json`)."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout
        self.last_error: str | None = None

    def post(self, head: SignedHead) -> bool:
        try:
            response = httpx.post(self.url, json=head_json(head), timeout=self.timeout)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.error("The chain witness %s did not take head %d: %s", self.url, head.seq, exc)
            return False
        self.last_error = None
        return True
