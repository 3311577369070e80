"""EHR launch (SMART App Launch §2.0.1, ``launch-ehr`` and ``context-ehr-patient``).

An EHR (a user of it with a clinical or admin role, or a backend service of a tenant) asks the
hub for a launch context bound to a patient it can see: ``POST /plugins/security/launch``
with ``{"patient": "<id>"}`` answers an opaque ``launch`` value. The EHR opens the app's launch
URL with ``iss`` (the FHIR base) and that ``launch``; the app sends it back in its
authorization request (scope ``launch``), and the token response carries the patient, with
no patient picker. The value is stored only as its SHA-256, lives ``LAUNCH_SECONDS`` and
works only for users who may read that patient in its tenant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import delete, insert, select

from fhirhub.plugins.security.state import Security, digest, now, random_token, security
from fhirhub.plugins.security.tables import launch_contexts
from fhirhub.sdk import FhirError, current_access, forbidden, read, tenant_of

#: How long an EHR's launch value may be used (an app is opened at once).
LAUNCH_SECONDS = 3600
#: Roles of EHR users who may open an app in a patient's context.
LAUNCHING_ROLES = frozenset({"super_admin", "org_admin", "clinician"})


@dataclass(frozen=True)
class LaunchContext:
    patient: str
    tenant: str | None
    created_by: str
    expires: int


def create_launch(
    sec: Security, *, patient: str, tenant: str | None, created_by: str
) -> tuple[str, int]:
    """Store a launch context; returns (the launch value, its lifetime in seconds)."""
    value = random_token()
    moment = now()
    with sec.engine.begin() as conn:
        conn.execute(delete(launch_contexts).where(launch_contexts.c.expires < moment))
        conn.execute(
            insert(launch_contexts).values(
                launch_hash=digest(value),
                tenant=tenant,
                patient=patient,
                created_by=created_by,
                expires=moment + LAUNCH_SECONDS,
            )
        )
    return value, LAUNCH_SECONDS


def find_launch(sec: Security, value: str) -> LaunchContext | None:
    """The still valid launch context of ``value``."""
    with sec.engine.connect() as conn:
        row = conn.execute(
            select(launch_contexts).where(launch_contexts.c.launch_hash == digest(value))
        ).first()
    if row is None or row.expires < now():
        return None
    return LaunchContext(row.patient, row.tenant, row.created_by, row.expires)


def launch_router(hub: Any) -> APIRouter:
    api = APIRouter(include_in_schema=False)

    @api.post("/launch")
    async def new_launch(request: Request) -> JSONResponse:
        access = current_access()
        is_client = access.subject.startswith("client:")
        if access.patient is not None or not (is_client or access.roles & LAUNCHING_ROLES):
            raise forbidden("Only an EHR (its clinicians, admins or backend service) launches apps")
        try:
            body = await request.json()
        except ValueError as exc:
            raise FhirError(400, 'Send a JSON object: {"patient": "<id>"}') from exc
        patient = body.get("patient") if isinstance(body, dict) else None
        if not isinstance(patient, str) or not patient:
            raise FhirError(400, 'Send a JSON object: {"patient": "<id>"}')
        patient = patient.removeprefix("Patient/")
        # Read as the caller: another tenant's patient is answered as a missing one (404).
        found = read(hub, "Patient", patient)
        sec = security(hub)
        value, lifetime = create_launch(
            sec,
            patient=patient,
            tenant=access.tenant or tenant_of(found),
            created_by=access.subject,
        )
        return JSONResponse(
            {
                "launch": value,
                "patient": patient,
                "iss": sec.fhir_base(request),
                "expires_in": lifetime,
            },
            status_code=201,
            headers={"Cache-Control": "no-store"},
        )

    return api
