"""The administration page (framed by the UI shell) and its JSON API.

Role rules: ``super_admin`` and ``app_admin`` see and manage organizations and users
everywhere (``app_admin`` cannot create a ``super_admin``); ``org_admin`` sees and manages
only the users of its own organization. Everyone else gets 403.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from fhirhub.plugins.security.invitations import invite
from fhirhub.plugins.security.roles import ROLES, may_manage
from fhirhub.plugins.security.routes import page
from fhirhub.plugins.security.state import security
from fhirhub.plugins.security.tenants import create_tenant, list_tenants, tenant_exists
from fhirhub.plugins.security.users import create_user, find_user, list_users, set_disabled
from fhirhub.sdk import FhirError, acting_as, current_access

ADMIN_ROLES = ("super_admin", "app_admin", "org_admin")


#: What a user's ``fhirUser`` may name (SMART App Launch: the user's own FHIR resource).
FHIR_USER_TYPES = ("Practitioner", "PractitionerRole", "Patient", "Person", "RelatedPerson")


def check_fhir_user(hub: Any, reference: str, tenant: str | None) -> None:
    """A user's ``fhirUser`` must be an existing resource of its tenant (400 otherwise): the
    claim tells apps who the user is, so it may not name nothing, or another tenant's person."""
    from fhirhub.sdk import read, system_for

    kind, _, resource_id = reference.partition("/")
    if kind not in FHIR_USER_TYPES or not resource_id:
        raise FhirError(400, f"fhirUser must be one of {', '.join(FHIR_USER_TYPES)}/<id>")
    with acting_as(system_for(tenant)):
        try:
            read(hub, kind, resource_id)
        except FhirError as exc:
            raise FhirError(
                400, f"fhirUser {reference} does not exist in {tenant or 'the hub'}"
            ) from exc


def admin_router(hub: Any) -> APIRouter:
    api = APIRouter(include_in_schema=False)

    def actor() -> tuple[frozenset[str], str | None]:
        access = current_access()
        access.require_role(*ADMIN_ROLES)
        roles = frozenset({"super_admin"}) if access.is_system else access.roles
        return roles, access.tenant

    def is_global(roles: frozenset[str]) -> bool:
        return bool(roles & {"super_admin", "app_admin"})

    @api.get("/ui/admin")
    def admin_page(request: Request) -> Response:
        return page(request, "admin.html", title="Administration", framed=True)

    @api.get("/admin/me")
    def me() -> JSONResponse:
        access = current_access()
        roles, tenant = actor()
        manageable = [r for r in ROLES if may_manage(roles, tenant, r, tenant)]
        return JSONResponse(
            {
                "subject": access.subject,
                "roles": sorted(roles),
                "tenant": tenant,
                "manageable_roles": manageable,
                "manages_tenants": is_global(roles),
            }
        )

    @api.get("/admin/users")
    def users() -> JSONResponse:
        roles, tenant = actor()
        found = list_users(security(hub), None if is_global(roles) else tenant)
        return JSONResponse([u.as_json() for u in found])

    @api.post("/admin/users")
    async def invite_user(request: Request) -> JSONResponse:
        roles, tenant = actor()
        body = await request.json()
        role = str(body.get("role", ""))
        user_tenant = body.get("tenant") or None
        if not is_global(roles):
            user_tenant = user_tenant or tenant
        if role in ROLES and not ROLES[role].tenant_bound:
            user_tenant = None
        if not may_manage(roles, tenant, role, user_tenant):
            raise FhirError(
                403,
                f"You may not create a {role} user in {user_tenant or 'no tenant'}",
                code="forbidden",
            )
        if user_tenant and not tenant_exists(hub, user_tenant):
            raise FhirError(400, f"There is no organization {user_tenant!r}")
        if body.get("fhirUser"):
            check_fhir_user(hub, str(body["fhirUser"]), user_tenant)
        sec = security(hub)
        user = create_user(
            sec,
            str(body.get("username", "")).strip(),
            role=role,
            tenant=user_tenant,
            email=str(body.get("email", "")).strip() or None,
            patient=body.get("patient") or None,
            fhir_user=body.get("fhirUser") or None,
        )
        invitation = invite(sec, user, sec.origin(request))
        answer = user.as_json()
        if not invitation.emailed:  # no SMTP: the inviter hands the link over, once
            answer["invitation_link"] = invitation.link
        return JSONResponse(answer, status_code=201, headers={"Cache-Control": "no-store"})

    @api.post("/admin/users/{username}/disable")
    def disable(username: str) -> JSONResponse:
        roles, tenant = actor()
        sec = security(hub)
        user = find_user(sec, username)
        if user is None or not (is_global(roles) or user.tenant == tenant):
            raise FhirError(404, f"No user {username!r}", code="not-found")
        if not may_manage(roles, tenant, user.role, user.tenant):
            raise FhirError(
                403, f"You may not manage the {user.role} {username!r}", code="forbidden"
            )
        set_disabled(sec, user.id, True)
        return JSONResponse({**user.as_json(), "disabled": True, "active": False})

    @api.get("/admin/tenants")
    def tenants() -> JSONResponse:
        roles, tenant = actor()
        return JSONResponse(list_tenants(hub, None if is_global(roles) else tenant or ""))

    @api.post("/admin/tenants")
    async def add_tenant(request: Request) -> JSONResponse:
        roles, _tenant = actor()
        if not is_global(roles):
            raise FhirError(
                403, "Only super_admin and app_admin create organizations", code="forbidden"
            )
        body = await request.json()
        organization = create_tenant(hub, str(body.get("id", "")), str(body.get("name", "")))
        return JSONResponse(
            {"id": organization["id"], "name": organization.get("name")}, status_code=201
        )

    return api
