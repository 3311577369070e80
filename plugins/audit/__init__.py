"""The audit trail: an ``AuditEvent`` for every access, a ``Provenance`` for every write.

* ``request_completed`` (every authenticated or refused HTTP request, and the security
  plugin's logins) queues the record; a writer thread stores AuditEvents in batches as the
  system (:mod:`.writer`), so auditing costs the request path one deque append. Each event
  carries its caller's tenant label, so an organisation's admin searching
  ``AuditEvent?agent=...&date=...&entity=...`` sees its own tenant's events only.
* Writes by a user or client get a ``Provenance`` in the same transaction, written through the
  normal write path from the ``before_commit`` hook (:mod:`.provenance`).

``GET /healthz`` reports ``audit`` failing while the store refuses AuditEvents.
"""

from __future__ import annotations

import threading
from typing import Any

from fhirhub.plugins.audit.provenance import add_provenance
from fhirhub.plugins.audit.writer import AuditWriter
from fhirhub.sdk import Hub, HubLocal, Transaction, hookimpl

__version__ = "1.0.0"
PLUGIN_NAME = "audit"
MANIFEST = {
    "resource_types": ["AuditEvent", "Provenance"],
    "scopes": ["system/AuditEvent.c", "system/Provenance.c"],
}

_WRITER: HubLocal[AuditWriter] = HubLocal("audit.writer")
_lock = threading.Lock()


def audit_writer(hub: Hub) -> AuditWriter:
    """This hub's writer, started on first use (requests may arrive before ``startup`` when an
    app is served without its lifespan)."""
    writer = _WRITER.get(hub)
    if writer is not None and writer.alive:
        return writer
    with _lock:
        writer = _WRITER.get(hub)
        if writer is None or not writer.alive:
            writer = _WRITER.set(hub, AuditWriter(hub))
        return writer


@hookimpl
def startup(hub: Hub) -> None:
    audit_writer(hub)


@hookimpl
def shutdown(hub: Hub) -> None:
    writer = _WRITER.pop(hub)
    if writer is not None:
        writer.stop()


@hookimpl
def request_completed(record: dict[str, Any], hub: Hub) -> None:
    audit_writer(hub).submit(record)


@hookimpl
def before_commit(transaction: Transaction) -> None:
    add_provenance(transaction)


@hookimpl
def health_checks(hub: Hub) -> list[tuple[str, Any]]:
    def stored() -> bool:
        writer = _WRITER.get(hub)
        return writer is None or writer.last_error is None

    return [("audit", stored)]
