"""The version log's tamper evidence, for plugins that check or anchor it.

The store chains every log row to the one before it (SHA-256, see docs/architecture.md); the
built-in ``integrity`` plugin signs the chain head, anchors the signed heads outside the
database and verifies both. These functions are what it uses, so another plugin (an external
witness, a monitoring job) can do the same.
"""

from __future__ import annotations

from collections.abc import Mapping

from nacl.signing import SigningKey, VerifyKey

from fhirhub.core.hub import Hub
from fhirhub.fhir_store.chain import Report as ChainReport
from fhirhub.fhir_store.chain import SignedHead, sign_head, verify_chain
from fhirhub.fhir_store.chain import Trust as LogTrust
from fhirhub.fhir_store.chain import key_id as chain_key_id
from fhirhub.fhir_store.projection_verify import verify_projections as _verify_projections
from fhirhub.fhir_store.projections import Alarm as IntegrityAlarm
from fhirhub.fhir_store.projections import ProjectionReport, alarms


def verify_log(
    hub: Hub,
    trusted_keys: Mapping[str, VerifyKey] | None = None,
    *,
    max_problems: int = 50,
    trust: LogTrust | None = None,
) -> ChainReport:
    """Check the whole version log's hash chain and every signed head (streamed in ``seq``
    order); the report names the first altered, deleted, reordered or unsigned entry.
    ``trust`` adds the heads anchored outside the database (each must still be in the log,
    with the same hash, and signed in the database) and the most an unsigned entry may age."""
    return verify_chain(hub.store.engine, trusted_keys, max_problems=max_problems, trust=trust)


def sign_log_head(hub: Hub, signing_key: SigningKey, *, force: bool = False) -> SignedHead | None:
    """Sign the log's current head with ``signing_key`` and store the signature; None when
    the log is empty or the head is already signed (unless ``force``)."""
    return sign_head(hub.store.engine, signing_key, force=force)


def verify_projections(hub: Hub, *, max_problems: int = 50) -> ProjectionReport:
    """Compare the projections with the log: every resource's current row with its newest
    log version (content, tenant, deletion, version), and every live resource's search index
    rows with those recomputed from its content. The report names each difference."""
    return _verify_projections(hub.store.engine, hub.store.indexer, max_problems=max_problems)


def integrity_alarms(hub: Hub) -> list[IntegrityAlarm]:
    """Current rows this process refused to serve because they do not match the log (newest
    last, at most 100): a non-empty list means the database was edited outside the hub."""
    return alarms(hub.store.engine)


__all__ = [
    "ChainReport",
    "IntegrityAlarm",
    "LogTrust",
    "ProjectionReport",
    "SignedHead",
    "chain_key_id",
    "integrity_alarms",
    "sign_log_head",
    "verify_log",
    "verify_projections",
]
