"""Periodic signing of the chain head: a background thread per hub process.

Signing is cheap (one indexed read, one Ed25519 signature, one small insert) and is skipped
when the head has not moved since the last signature, so an idle hub writes nothing. Several
processes (uvicorn workers, hosts on one PostgreSQL) may sign concurrently: the first to sign a
head wins and the others skip it.
"""

from __future__ import annotations

import logging
import threading

from nacl.signing import SigningKey

from fhirhub.sdk import Hub, SignedHead, sign_log_head

log = logging.getLogger("fhirhub.integrity")


class HeadSigner:
    def __init__(self, hub: Hub, key: SigningKey, interval: float) -> None:
        self.hub = hub
        self.key = key
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="fhirhub-chain-signer", daemon=True)
        self._thread.start()

    def sign_now(self, *, force: bool = False) -> SignedHead | None:
        return sign_log_head(self.hub, self.key, force=force)

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
