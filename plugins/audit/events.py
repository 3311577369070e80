"""What happened, as a FHIR R4 ``AuditEvent`` (http://hl7.org/fhir/R4/auditevent.html).

One ``request_completed`` record becomes one AuditEvent, shaped after IHE Basic Audit Log
Patterns (BALP): ``type`` is the FHIR ``rest`` event with the ``restful-interaction`` code as
``subtype``, or the DICOM "User Authentication" event (DCM 110114) with Login (110122) for the
security plugin's logins; ``action`` follows the interaction (C/R/U/D/E); ``outcome`` follows
the HTTP status (0 success, 4 minor failure for 4xx, 8 serious failure for 5xx); the requesting
agent is the caller (its FHIR user when known, otherwise its subject as a logical identifier
and ``altId``), with its network address; the ``entity`` is the resource the request named or,
for searches, the query itself (``entity.query``, base64 as the spec's type says).

Building is pure and runs on the writer thread, never on the event loop.
"""

from __future__ import annotations

import base64
import re
import uuid
from typing import Any

from fhirhub.sdk import RESOURCE_TYPES, Access, format_instant, with_tenant

DCM = "http://dicom.nema.org/resources/ontology/DCM"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ROLE_TYPE = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
#: ``Identifier.system`` for callers that have no FHIR resource (``user:alice``, ``client:x``).
SUBJECT_SYSTEM = "https://fhirhub.dev/fhir/sid/subject"
CLIENT_SYSTEM = "https://fhirhub.dev/fhir/sid/client"

REST = {"system": EVENT_TYPE, "code": "rest", "display": "RESTful Operation"}
USER_AUTHENTICATION = {"system": DCM, "code": "110114", "display": "User Authentication"}
LOGIN = {"system": DCM, "code": "110122", "display": "Login"}
APPLICATION = {"system": DCM, "code": "110150", "display": "Application"}
HUMAN_USER = {"system": ROLE_TYPE, "code": "humanuser", "display": "human user"}

#: AuditEvent.action (required binding audit-event-action) per FHIR interaction; searches,
#: operations and Bundles are "E" (execute), as BALP records queries.
ACTIONS = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "capabilities": "R",
    "history-instance": "R",
    "history-type": "R",
    "history-system": "R",
    "update": "U",
    "patch": "U",
    "delete": "D",
}
#: The codes of http://hl7.org/fhir/restful-interaction (R4 codesystem-restful-interaction).
INTERACTIONS = frozenset(
    {
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history",
        "history-instance",
        "history-type",
        "history-system",
        "create",
        "search",
        "search-type",
        "search-system",
        "search-compartment",
        "capabilities",
        "transaction",
        "batch",
        "operation",
    }
)
_METHOD_ACTIONS = {"GET": "R", "HEAD": "R", "PUT": "U", "PATCH": "U", "DELETE": "D"}
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_REFERENCE = re.compile(r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")
# C0 controls other than tab, CR and LF have no place in a FHIR string.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MAX_TEXT = 2000


def text(value: str) -> str:
    """``value`` made a safe FHIR string: control characters replaced, length bounded."""
    cleaned = _CONTROL.sub("\ufffd", value)
    return cleaned if len(cleaned) <= _MAX_TEXT else cleaned[: _MAX_TEXT - 1] + "\u2026"


def outcome_of(status: int) -> str:
    """audit-event-outcome: 0 success, 4 minor failure (the client's), 8 serious failure."""
    if status < 400:
        return "0"
    return "4" if status < 500 else "8"


def audit_event(record: dict[str, Any], *, site: str) -> dict[str, Any]:
    """The AuditEvent for one ``request_completed`` record (see the hook's contract)."""
    interaction: str = record.get("interaction") or "http"
    status = int(record.get("status") or 0)
    access: Access | None = record.get("access")
    started = int(record.get("started") or 0)
    ended = started + int(float(record.get("duration_ms") or 0) * 1000)
    method = str(record.get("method") or "GET").upper()

    event: dict[str, Any] = {"resourceType": "AuditEvent", "id": str(uuid.uuid4())}
    if interaction in ("login", "login-failed"):
        event["type"] = USER_AUTHENTICATION
        event["subtype"] = [LOGIN]
        event["action"] = "E"
        outcome = outcome_of(status) if status else "0"
        if interaction == "login-failed" and outcome == "0":
            outcome = "4"
    else:
        event["type"] = REST
        if interaction in INTERACTIONS:
            event["subtype"] = [{"system": INTERACTION, "code": interaction}]
        event["action"] = ACTIONS.get(interaction) or (
            _METHOD_ACTIONS.get(method, "E") if interaction == "http" else "E"
        )
        outcome = outcome_of(status)
    event["period"] = {"start": format_instant(started), "end": format_instant(ended)}
    event["recorded"] = format_instant(ended)
    event["outcome"] = outcome
    event["outcomeDesc"] = text(f"{method} {record.get('path') or ''} -> {status}")
    event["agent"] = agents(access, record.get("remote"), record)
    event["source"] = {
        "site": text(site or "fhirhub"),
        "observer": {"display": "fhirhub"},
        "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
    }
    entity = entity_of(record, interaction)
    if entity is not None:
        event["entity"] = [entity]
    if access is not None and access.tenant is not None:
        with_tenant(event, access.tenant)
    return event


def who(access: Access) -> dict[str, Any]:
    """The caller as a Reference: its FHIR user (``fhirUser``, e.g. ``Practitioner/7``) when
    the token names one, otherwise a logical reference by its subject."""
    fhir_user = access.extra.get("fhir_user") if access.extra else None
    if isinstance(fhir_user, str) and _REFERENCE.match(fhir_user):
        return {"reference": fhir_user, "display": text(access.subject)}
    return {
        "identifier": {"system": SUBJECT_SYSTEM, "value": text(access.subject)},
        "display": text(access.subject),
    }


def agents(access: Access | None, remote: Any, record: dict[str, Any]) -> list[dict[str, Any]]:
    agent: dict[str, Any] = {}
    if access is None:
        # Refused before authentication (401) or a failed login: who it claimed to be, if known.
        claimed = record.get("subject") or record.get("username")
        agent["who"] = {"display": text(str(claimed)) if claimed else "unauthenticated"}
    else:
        is_client = access.subject.startswith("client:")
        agent["type"] = {"coding": [APPLICATION if is_client else HUMAN_USER]}
        agent["who"] = who(access)
        agent["altId"] = text(access.subject)
        if access.roles:
            agent["role"] = [{"text": text(role)} for role in sorted(access.roles)]
        if access.token_id:
            agent["policy"] = [f"urn:fhirhub:token:{text(access.token_id).replace(' ', '_')}"]
    agent["requestor"] = True
    address = remote or (access.remote if access is not None else None)
    if address:
        agent["network"] = {"address": text(str(address)), "type": "2"}  # 2: IP address
    out = [agent]
    if access is not None and access.client_id and access.subject != f"client:{access.client_id}":
        out.append(
            {
                "type": {"coding": [APPLICATION]},
                "who": {
                    "identifier": {"system": CLIENT_SYSTEM, "value": text(access.client_id)},
                    "display": text(access.client_id),
                },
                "requestor": False,
            }
        )
    return out


def entity_of(record: dict[str, Any], interaction: str) -> dict[str, Any] | None:
    resource_type = record.get("resource_type")
    resource_id = record.get("resource_id")
    known_type = isinstance(resource_type, str) and resource_type in RESOURCE_TYPES
    query = str(record.get("query") or "")  # the core redacted secrets before the hook
    if interaction.startswith("search"):
        # entity-1: a query or a name, not both; the description says what was searched.
        entity: dict[str, Any] = {
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
            "description": text(f"{resource_type if known_type else 'system'}?{query}"),
        }
        if query:
            entity["query"] = base64.b64encode(query.encode()).decode("ascii")
        if known_type and isinstance(resource_id, str) and _ID.match(resource_id):
            entity["what"] = {"reference": f"{resource_type}/{resource_id}"}  # the compartment
        return entity
    if known_type and isinstance(resource_id, str) and _ID.match(resource_id):
        patient = resource_type == "Patient"
        reference = f"{resource_type}/{resource_id}"
        version = _version_in(str(record.get("path") or ""))
        if interaction == "vread" and version:
            reference += f"/_history/{version}"
        return {
            "what": {"reference": reference},
            "type": {
                "system": ENTITY_TYPE,
                "code": "1" if patient else "2",
                "display": "Person" if patient else "System Object",
            },
            "role": {
                "system": OBJECT_ROLE,
                "code": "1" if patient else "4",
                "display": "Patient" if patient else "Domain Resource",
            },
        }
    path = record.get("path")
    if interaction in ("login", "login-failed") or not path:
        return None
    return {
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "description": text(f"{record.get('method') or ''} {path}".strip()),
    }


def _version_in(path: str) -> str | None:
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[-2] == "_history" and parts[-1].isdigit():
        return parts[-1]
    return None
