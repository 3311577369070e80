"""A stand-in for the OAuth server in tests: ``X-Test-User`` names the caller.

``X-Test-User: alice`` authenticates as ``user:alice`` with ``user/*.cruds``;
``X-Test-Tenant``, ``X-Test-Scopes``, ``X-Test-Roles``, ``X-Test-Client`` and
``X-Test-Fhir-User`` shape the rest of the :class:`Access`. Unknown callers fall through to the
hub's 401, as with real tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fhirhub.core.hub import Hub, build_hub
from fhirhub.core.settings import Settings
from fhirhub.sdk import SYSTEM, Access, acting_as, hookimpl, parse_scopes, transaction
from tests.tenants import add_tenants


class HeaderAuth:
    PLUGIN_NAME = "test-header-auth"

    @hookimpl
    def authenticate_request(self, request: Any, hub: Hub) -> Access | None:
        headers = request.headers
        user = headers.get("x-test-user")
        if not user:
            return None
        client = headers.get("x-test-client")
        fhir_user = headers.get("x-test-fhir-user")
        return Access(
            subject=user if ":" in user else f"user:{user}",
            tenant=headers.get("x-test-tenant"),
            roles=frozenset(filter(None, headers.get("x-test-roles", "").split(","))),
            scopes=parse_scopes(headers.get("x-test-scopes", "user/*.cruds")),
            client_id=client,
            remote=request.client.host if request.client else None,
            token_id=headers.get("x-test-token"),
            extra={"fhir_user": fhir_user} if fhir_user else {},
        )


def auth_hub(database_url: str, data_dir: Path, **settings: Any) -> Hub:
    """A hub with authentication on and :class:`HeaderAuth` as its only authenticator."""
    values: dict[str, Any] = {"db": database_url, "data_dir": data_dir, "auth": "on"}
    values |= {"listeners": False}  # no listeners: tests run in parallel
    values.update(settings)
    hub = build_hub(Settings(**values), extra_plugins=[HeaderAuth()])
    # What the callers of these tests name (their tenants, their FHIR users) exists, as a
    # Provenance naming them must reference stored resources.
    add_tenants(hub, "org-a", "org-b", "org-1")
    with acting_as(SYSTEM), transaction(hub) as tx:
        for practitioner in ("p-1", "p-7"):
            tx.update({"resourceType": "Practitioner", "id": practitioner})
    return hub


def as_user(user: str = "alice", **headers: str) -> dict[str, str]:
    out = {"X-Test-User": user, "Content-Type": "application/fhir+json"}
    out.update({f"X-Test-{name.replace('_', '-').title()}": v for name, v in headers.items()})
    return out
