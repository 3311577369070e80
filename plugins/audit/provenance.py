"""A ``Provenance`` for every write by a user or client, in the same transaction
(http://hl7.org/fhir/R4/provenance.html).

Where: the ``before_commit`` hook, which sees every unit of work that is about to commit,
whatever wrote it: a REST create, update, patch or delete, a transaction or batch entry, a
plugin route calling the SDK. ``resource_before_write`` alone would miss deletions (they write
a tombstone without a resource to hook). The Provenance is written through the transaction
like any resource (validated, hooked, its targets reference-checked), as the system: the
audit trail is append-only for everyone else.

What: ``target`` is every version the unit wrote (``Type/id/_history/n``, tombstones
included), ``recorded`` the commit time, the agent the caller (its FHIR user when known, on
behalf of its tenant's Organization), ``activity`` the v3 DataOperation code. A unit that both
creates and updates gets one Provenance per activity, since ``activity`` holds one concept.

Writes by the system (adapters, the dispatcher, the CLI, the audit writer itself) get none
here: the HL7 adapter records its own Provenance naming the source message.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fhirhub.plugins.audit.events import APPLICATION, CLIENT_SYSTEM, text, who
from fhirhub.sdk import (
    SYSTEM,
    Access,
    StoredVersion,
    Transaction,
    acting_as,
    current_access,
    format_instant,
    with_tenant,
)

DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
AUTHOR = {"system": PARTICIPANT_TYPE, "code": "author", "display": "Author"}
ACTIVITY_DISPLAY = {"CREATE": "create", "UPDATE": "revise", "DELETE": "delete"}


def activity_of(version: StoredVersion) -> str:
    if version.deleted:
        return "DELETE"
    return "CREATE" if version.version_id == 1 else "UPDATE"


def add_provenance(transaction: Transaction) -> None:
    """The ``before_commit`` hook: add the Provenance(s) for what ``transaction`` wrote."""
    access = current_access()
    if access is SYSTEM or access.subject == "system":
        return
    by_activity: dict[str, list[StoredVersion]] = {}
    for version in transaction.written:  # flushed: every version carries its number
        by_activity.setdefault(activity_of(version), []).append(version)
    if not by_activity:
        return
    now = time.time_ns() // 1000
    with acting_as(SYSTEM):
        for activity, versions in by_activity.items():
            transaction.create(provenance_for(access, activity, versions, now))


def provenance_for(
    access: Access, activity: str, versions: list[StoredVersion], now: int
) -> dict[str, Any]:
    agent: dict[str, Any] = {"type": {"coding": [AUTHOR]}, "who": who(access)}
    if access.tenant is not None:
        agent["onBehalfOf"] = {"reference": f"Organization/{access.tenant}"}
    agents = [agent]
    if access.client_id and access.subject != f"client:{access.client_id}":
        agents.append(
            {
                "type": {"coding": [APPLICATION]},
                "who": {
                    "identifier": {"system": CLIENT_SYSTEM, "value": text(access.client_id)},
                    "display": text(access.client_id),
                },
            }
        )
    provenance: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": str(uuid.uuid4()),
        "target": [
            {"reference": f"{v.resource_type}/{v.resource_id}/_history/{v.version_id}"}
            for v in versions
        ],
        "recorded": format_instant(now),
        "activity": {
            "coding": [
                {
                    "system": DATA_OPERATION,
                    "code": activity,
                    "display": ACTIVITY_DISPLAY[activity],
                }
            ]
        },
        "agent": agents,
    }
    if access.tenant is not None:
        with_tenant(provenance, access.tenant)
    return provenance
