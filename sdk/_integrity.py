"""The version log's tamper evidence, for plugins that check or anchor it.

The store chains every log row to the one before it (SHA-256, see docs/architecture.md); the
built-in ``integrity`` plugin signs the chain head and verifies it. These functions are what
it uses, so another plugin (an external witness, a monitoring job) can do the same.
"""

from __future__ import annotations

from collections.abc import Mapping

from nacl.signing import SigningKey, VerifyKey

from fhirhub.core.hub import Hub
from fhirhub.fhir_store.chain import Report as ChainReport
from fhirhub.fhir_store.chain import SignedHead, sign_head, verify_chain
from fhirhub.fhir_store.chain import key_id as chain_key_id


def verify_log(
    hub: Hub, trusted_keys: Mapping[str, VerifyKey] | None = None, *, max_problems: int = 50
) -> ChainReport:
    """Check the whole version log's hash chain and every signed head (streamed in ``seq``
    order); the report names the first altered, deleted, reordered or unsigned entry."""
    return verify_chain(hub.store.engine, trusted_keys, max_problems=max_problems)


def sign_log_head(hub: Hub, signing_key: SigningKey, *, force: bool = False) -> SignedHead | None:
    """Sign the log's current head with ``signing_key`` and store the signature; None when
    the log is empty or the head is already signed (unless ``force``)."""
    return sign_head(hub.store.engine, signing_key, force=force)


__all__ = ["ChainReport", "SignedHead", "chain_key_id", "sign_log_head", "verify_log"]
