"""Who is asking, and what they may see: the one access decision every interaction consults.

An :class:`Access` describes the caller of the current request: the subject (a user, a
registered client, or the system itself), the tenant it belongs to, its roles, its SMART scopes
and, for a patient-facing app, the launch patient. Authentication (the ``security`` plugin, or
any plugin implementing ``authenticate_request``) builds one per HTTP request; the interactions
layer asks it before doing anything and the store filters with the :class:`Visibility` it
derives, so that totals, paging and ``_include`` never count or show what the caller may not
see.

The current access lives in a context variable rather than being threaded through every
function: FastAPI copies the context into the worker threads that run database work, so a
plugin route that calls the SDK's in-process ``read``/``search`` is restricted to its caller
automatically, while code with no request (the dispatcher, adapters, the CLI, Celery workers)
runs as :data:`SYSTEM`. A forgotten parameter cannot widen access; only ``acting_as`` can.

Scopes follow SMART App Launch 2.0 (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html):
``patient/Observation.rs``, ``user/*.cruds``, ``system/*.rs``; the v1 forms ``.read``,
``.write`` and ``.*`` are accepted as ``rs``, ``cud`` and ``cruds``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from fhirhub.fhir_store.errors import FhirError
from fhirhub.fhir_store.search.visibility import Visibility
from fhirhub.fhir_store.tenancy import SHARED_TYPES, tenant_of, visible_to_tenant

#: SMART v2 permissions: create, read, update, delete, search.
PERMISSIONS = "cruds"

_SCOPE = re.compile(
    r"^(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]+)\.(?P<perms>\*|read|write|[cruds]+)$"
)
_V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}

#: Types a wildcard scope does not reach unless the caller holds an admin role: the audit
#: trail is for those who oversee access, not for every clinician with ``user/*.cruds``.
ADMIN_ONLY_TYPES = frozenset({"AuditEvent"})
ADMIN_ROLES = frozenset({"super_admin", "app_admin", "org_admin"})
#: The record of who did what: written by the system only (the audit trail, the Provenance of
#: every write), never created, changed or deleted through a caller's scopes, whatever its role.
APPEND_ONLY_TYPES = frozenset({"AuditEvent", "Provenance"})


@dataclass(frozen=True)
class Scope:
    """One parsed SMART scope: ``patient/Observation.rs`` -> (patient, Observation, {r, s})."""

    context: str  # patient | user | system
    resource_type: str  # a type name or "*"
    permissions: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        """The scope, or None for strings that are not resource scopes (``openid``,
        ``launch/patient``, ``offline_access``...). A SMART v2 granular scope with query
        parameters (``patient/Observation.rs?category=laboratory``) is None too: the hub does
        not filter by them, and reading it as the whole type would widen it."""
        match = _SCOPE.match(text)
        if match is None:
            return None
        perms = match["perms"]
        perms = _V1_PERMISSIONS.get(perms, perms)
        if any(perms.count(p) > 1 for p in perms):
            return None
        return cls(match["context"], match["type"], frozenset(perms))

    def grants(self, permission: str, resource_type: str) -> bool:
        return permission in self.permissions and self.resource_type in ("*", resource_type)


def parse_scopes(text: str) -> tuple[Scope, ...]:
    """The resource scopes in a space-separated scope string (others are ignored here)."""
    scopes = (Scope.parse(part) for part in text.split())
    return tuple(scope for scope in scopes if scope is not None)


@dataclass(frozen=True)
class Access:
    """The caller of the current interaction; see the module docstring."""

    subject: str  # "system", "user:<id>", "client:<id>"
    tenant: str | None = None  # the Organization id the caller acts for; None = all tenants
    roles: frozenset[str] = frozenset()
    scopes: tuple[Scope, ...] | None = None  # None = not limited by scopes (the system)
    patient: str | None = None  # launch patient context (patient-facing apps)
    client_id: str | None = None
    remote: str | None = None  # the client address, for audit
    token_id: str | None = None  # the access token's jti, for audit and revocation
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_system(self) -> bool:
        return self.scopes is None and self.tenant is None and self.patient is None

    # -- interaction level ---------------------------------------------------------------------
    def allows(self, permission: str, resource_type: str) -> bool:
        """Whether some scope grants ``permission`` (one of ``cruds``) on ``resource_type``."""
        if self.scopes is None:
            return True
        if resource_type in APPEND_ONLY_TYPES and permission in ("c", "u", "d"):
            return False
        if resource_type in ADMIN_ONLY_TYPES and not self.roles & ADMIN_ROLES:
            return any(
                s.resource_type == resource_type and permission in s.permissions
                for s in self.scopes
            )
        return any(scope.grants(permission, resource_type) for scope in self.scopes)

    def require(self, permission: str, resource_type: str | None) -> None:
        """Raise 403 unless the caller may ``permission`` on ``resource_type`` (None: any type,
        as for system-level search and history, whose results are filtered per type)."""
        if resource_type is None:
            if self.scopes is None or any(permission in s.permissions for s in self.scopes):
                return
            raise forbidden(f"No scope grants '{permission}' on any resource type")
        if not self.allows(permission, resource_type):
            raise forbidden(
                f"The access token has no scope granting '{permission}' on {resource_type}"
            )

    def require_role(self, *roles: str) -> None:
        """Raise 403 unless the caller is the system or holds one of ``roles``."""
        if self.is_system or self.roles.intersection(roles):
            return
        raise forbidden(f"This needs one of the roles: {', '.join(roles)}")

    # -- resource level ------------------------------------------------------------------------
    def visibility(self, permission: str = "r") -> Visibility:
        """The store-level filter for results of this caller (``permission`` r or s)."""
        types: frozenset[str] | None = None
        hidden: frozenset[str] = frozenset()
        if self.scopes is not None:
            wildcard = any(
                s.resource_type == "*" and permission in s.permissions for s in self.scopes
            )
            if not wildcard:
                types = frozenset(
                    s.resource_type for s in self.scopes if permission in s.permissions
                )
            hidden = frozenset(t for t in ADMIN_ONLY_TYPES if not self.allows(permission, t))
        return Visibility(
            tenant=self.tenant, patient=self.patient, types=types, hidden_types=hidden
        )

    def may_see(
        self, resource_type: str, resource: dict[str, Any] | None, tenant: str | None
    ) -> bool:
        """Whether one stored resource is visible (tenant and type; the patient compartment is
        checked by the store, which knows the compartment definition)."""
        if self.tenant is not None and not visible_to_tenant(resource_type, tenant, self.tenant):
            return False
        return self.allows("r", resource_type) or self.allows("s", resource_type)

    def label_for_write(self, resource: dict[str, Any]) -> None:
        """Give a resource written by this caller its tenant label (see
        :func:`fhirhub.fhir_store.tenancy.with_tenant`); the system writes what it is given."""
        if self.tenant is None:
            return
        from fhirhub.fhir_store.tenancy import with_tenant

        with_tenant(resource, self.tenant)

    def owns(self, tenant: str | None, resource_type: str) -> bool:
        """Whether a stored version with ``tenant`` belongs to this caller's tenant."""
        return (
            self.tenant is None
            or tenant == self.tenant
            or (resource_type in SHARED_TYPES and tenant is None)
        )


#: Code with no request behind it: adapters, the dispatcher, the CLI, Celery workers.
SYSTEM = Access(subject="system")

_current: ContextVar[Access] = ContextVar("fhirhub_access", default=SYSTEM)


def current_access() -> Access:
    """The caller of the interaction running in this context (:data:`SYSTEM` when none)."""
    return _current.get()


def system_for(tenant: str | None) -> Access:
    """The system acting for one tenant: what an adapter writes for a hospital (an HL7 feed
    or DICOM node mapped to it). Its writes are labelled with ``tenant``, its conditional
    matching and reads see only that tenant's resources, and it can never change another
    tenant's; no scope limits it. ``None`` is :data:`SYSTEM` (every tenant)."""
    if tenant is None:
        return SYSTEM
    return Access(subject="system", tenant=tenant)


@contextmanager
def acting_as(access: Access) -> Iterator[Access]:
    """Run the block as ``access`` (the HTTP layer sets it per request)."""
    token = _current.set(access)
    try:
        yield access
    finally:
        _current.reset(token)


def forbidden(text: str) -> FhirError:
    return FhirError(403, text, code="forbidden")


def resource_tenant(content: bytes | dict[str, Any] | None) -> str | None:
    """The tenant label of stored content (bytes are parsed; prefer the stored column)."""
    if content is None:
        return None
    if isinstance(content, bytes | bytearray | memoryview):
        import orjson

        content = orjson.loads(bytes(content))
    assert isinstance(content, dict)
    return tenant_of(content)


__all__ = [
    "SHARED_TYPES",
    "SYSTEM",
    "Access",
    "Scope",
    "Visibility",
    "acting_as",
    "current_access",
    "forbidden",
    "parse_scopes",
    "resource_tenant",
    "system_for",
]
