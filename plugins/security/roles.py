"""Roles, as hospitals expect them, and what each may be granted.

A token's scopes are what the client asked for *intersected with* what the user's role allows
(SMART App Launch 2.0 lets the server grant fewer scopes than requested and says so in the
token response's ``scope``). Tenants are Organizations: every role but ``super_admin`` and
``app_admin`` is bound to one, and its Access carries that tenant.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhirhub.sdk import Scope

#: SMART v2 permissions, in their canonical order: create, read, update, delete, search.
PERMISSIONS = "cruds"


@dataclass(frozen=True)
class Role:
    name: str
    allowed: tuple[str, ...]  # the SMART scopes this role may hold
    tenant_bound: bool  # acts for one Organization (Access.tenant) or for all (None)
    description: str


ROLES: dict[str, Role] = {
    role.name: role
    for role in (
        Role(
            "super_admin",
            ("user/*.cruds", "user/AuditEvent.rs"),
            False,
            "everything, every tenant",
        ),
        Role(
            "app_admin",
            ("user/Organization.cruds",),
            False,
            "creates organizations (tenants) and users; no clinical data",
        ),
        Role(
            "org_admin",
            (
                "user/Organization.rs",
                "user/Endpoint.cruds",
                "user/Practitioner.cruds",
                "user/PractitionerRole.cruds",
                "user/Location.cruds",
                "user/AuditEvent.rs",
            ),
            True,
            "its organization's users, PACS (Endpoint) and settings",
        ),
        Role("clinician", ("user/*.cruds",), True, "clinical data of its organization"),
        Role("patient", ("patient/*.rs",), True, "reads its own record"),
    )
}

#: Who may create or manage users of which role (besides ``super_admin``, who may do all).
MANAGEABLE_ROLES = {
    # app_admin holds no clinical data: it creates organizations and their first admins, who
    # create their own clinicians and patients (never an account it could sign in with).
    "app_admin": frozenset({"org_admin"}),
    "org_admin": frozenset({"org_admin", "clinician", "patient"}),
}

#: Scopes that are not resource scopes but which the hub understands.
NON_RESOURCE_SCOPES = frozenset(
    {"openid", "fhirUser", "profile", "launch", "launch/patient", "offline_access", "online_access"}
)
#: Written by the system only (``fhirhub.sdk``'s access rules refuse every caller's c/u/d):
#: no token is granted write permissions on them, so none claims to have them.
APPEND_ONLY_TYPES = frozenset({"AuditEvent", "Provenance"})
#: Reached only by a scope naming the type (an admin role's allowance), never by a wildcard:
#: a clinician's ``user/*.cruds`` does not let it read the audit trail.
NAMED_ONLY_TYPES = frozenset({"AuditEvent"})


def scope_text(scope: Scope) -> str:
    perms = "".join(p for p in PERMISSIONS if p in scope.permissions)
    return f"{scope.context}/{scope.resource_type}.{perms}"


def intersect(requested: Scope, allowed: Scope) -> Scope | None:
    """The part of ``requested`` that ``allowed`` covers, or None.

    A ``user/`` grant covers ``patient/`` requests too (a patient-context scope is narrower);
    ``system/`` covers only ``system/``.
    """
    if requested.context != allowed.context and not (
        requested.context == "patient" and allowed.context == "user"
    ):
        return None
    if allowed.resource_type == "*":
        if requested.resource_type in NAMED_ONLY_TYPES:
            return None
        resource_type = requested.resource_type
    elif requested.resource_type in ("*", allowed.resource_type):
        resource_type = allowed.resource_type
    else:
        return None
    permissions = requested.permissions & allowed.permissions
    if resource_type in APPEND_ONLY_TYPES:
        permissions -= {"c", "u", "d"}
    if not permissions:
        return None
    return Scope(requested.context, resource_type, frozenset(permissions))


def grant(
    requested: str, allowed: list[str] | tuple[str, ...], *, patient_only: bool = False
) -> str:
    """The granted scope string: resource scopes intersected with ``allowed``, and the
    non-resource scopes the hub understands kept as they are.

    ``patient_only`` (the patient role) narrows ``user/`` requests to ``patient/``: a patient
    who signs in to an app asking for ``user/*.rs`` gets ``patient/*.rs`` on their own record.
    """
    allowed_scopes = [s for s in (Scope.parse(a) for a in allowed) if s is not None]
    granted: list[str] = []
    for part in requested.split():
        if part in NON_RESOURCE_SCOPES:
            granted.append(part)
            continue
        scope = Scope.parse(part)
        if scope is None:
            continue  # unknown scopes are dropped, not an error (RFC 6749 §3.3)
        if patient_only and scope.context == "user":
            scope = Scope("patient", scope.resource_type, scope.permissions)
        for allowed_scope in allowed_scopes:
            narrowed = intersect(scope, allowed_scope)
            if narrowed is not None:
                text = scope_text(narrowed)
                if text not in granted:
                    granted.append(text)
    return " ".join(_without_covered(granted))


def _without_covered(granted: list[str]) -> list[str]:
    """Drop scopes another granted scope already covers (``system/Observation.rs`` next to
    ``system/*.rs``)."""
    parsed = {text: Scope.parse(text) for text in granted}

    def covered(text: str, scope: Scope) -> bool:
        return any(
            other != text
            and wider is not None
            and wider.context == scope.context
            and wider.resource_type in ("*", scope.resource_type)
            and wider.permissions >= scope.permissions
            and (wider.resource_type, len(wider.permissions))
            != (scope.resource_type, len(scope.permissions))
            for other, wider in parsed.items()
        )

    return [t for t in granted if parsed[t] is None or not covered(t, parsed[t])]  # type: ignore[arg-type]


def role_grant(requested: str, roles: list[str] | tuple[str, ...] | frozenset[str]) -> str:
    """What a user holding ``roles`` may be granted of ``requested``."""
    allowed: list[str] = []
    for name in roles:
        role = ROLES.get(name)
        if role is not None:
            allowed.extend(role.allowed)
    patient_only = bool(roles) and all(
        ROLES.get(r, ROLES["patient"]).name == "patient" for r in roles
    )
    return grant(requested, allowed, patient_only=patient_only)


def may_manage(
    actor_roles: frozenset[str], actor_tenant: str | None, role: str, tenant: str | None
) -> bool:
    """Whether someone with ``actor_roles`` (in ``actor_tenant``) may create or manage a user
    with ``role`` in ``tenant``: super_admin anyone; app_admin any role but super_admin, in any
    tenant; org_admin the roles of its own tenant only."""
    if "super_admin" in actor_roles:
        return True
    if "app_admin" in actor_roles and role in MANAGEABLE_ROLES["app_admin"]:
        return True
    return (
        "org_admin" in actor_roles
        and role in MANAGEABLE_ROLES["org_admin"]
        and actor_tenant is not None
        and tenant == actor_tenant
    )


def narrow(requested: str, original: str) -> str:
    """The scopes of a refresh request (RFC 6749 §6): what ``requested`` asks for *within*
    ``original``. Resource scopes are intersected with the original ones; the others
    (``offline_access``, ``openid``, ``launch/patient``...) are kept only when the original
    grant had them, so a refresh never turns ``online_access`` into ``offline_access``."""
    words = original.split()
    resources = grant(
        " ".join(w for w in requested.split() if w not in NON_RESOURCE_SCOPES),
        [w for w in words if w not in NON_RESOURCE_SCOPES],
    ).split()
    others = [w for w in requested.split() if w in NON_RESOURCE_SCOPES and w in words]
    return " ".join(dict.fromkeys(resources + others))


def without_patient_scopes(scope: str) -> str:
    """``scope`` without its ``patient/`` resource scopes: what is left when no patient context
    could be established (SMART: patient-level scopes need one)."""
    return " ".join(w for w in scope.split() if not w.startswith("patient/"))


def has_patient_scopes(scope: str) -> bool:
    return any(w.startswith("patient/") and Scope.parse(w) is not None for w in scope.split())
