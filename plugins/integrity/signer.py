"""Periodic signing of the chain head: a background thread per hub process.

Signing is cheap (one indexed read, one Ed25519 signature, one small insert) and is skipped
when the head has not moved since the last signature, so an idle hub writes nothing. Several
processes (uvicorn workers, hosts on one PostgreSQL) may sign concurrently: the first to sign a
head wins and the others skip it. Each new signature is anchored outside the database
(:mod:`fhirhub.plugins.integrity.anchor`) before it is reported.
"""

from __future__ import annotations

import logging
import threading

from nacl.signing import SigningKey

from fhirhub.plugins.integrity.anchor import AnchorFile, Witness
from fhirhub.sdk import Hub, SignedHead, sign_log_head

log = logging.getLogger("fhirhub.integrity")


class HeadSigner:
    def __init__(
        self,
        hub: Hub,
        key: SigningKey,
        interval: float,
        *,
        anchor: AnchorFile | None = None,
        witness: Witness | None = None,
    ) -> None:
        self.hub = hub
        self.key = key
        self.interval = interval
        self.anchor = anchor
        self.witness = witness
        #: The last failure to anchor a head in the file, None when the last one worked.
        self.anchor_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="fhirhub-chain-signer", daemon=True)
        self._thread.start()

    def sign_now(self, *, force: bool = False) -> SignedHead | None:
        signed = sign_log_head(self.hub, self.key, force=force)
        if signed is not None:
            self._anchor(signed)
        return signed

    def _anchor(self, signed: SignedHead) -> None:
        if self.anchor is not None:
            try:
                self.anchor.append(signed)
                self.anchor_error = None
            except OSError as exc:
                self.anchor_error = f"{type(exc).__name__}: {exc}"
                log.error("Could not anchor head %d in %s: %s", signed.seq, self.anchor.path, exc)
        if self.witness is not None:
            self.witness.post(signed)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sign_now()
            except Exception:  # the next round retries; a failure must not end the thread
                log.exception("Signing the chain head failed")

    def stop(self) -> None:
        """Stop the thread and sign the head one last time (what was written until now)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        try:
            self.sign_now()
        except Exception:
            log.exception("Signing the chain head at shutdown failed")
