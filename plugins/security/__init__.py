"""Authentication and authorization: SMART App Launch 2 and SMART Backend Services on a
built-in OAuth 2 authorization server, or an external OpenID Connect issuer.

* ``authenticate_request`` turns a bearer token into the caller's :class:`fhirhub.sdk.Access`
  (subject, tenant, roles, SMART scopes, launch patient); enforcement happens in the core.
* ``/fhir/.well-known/smart-configuration`` and the endpoints under ``/plugins/security``:
  ``authorize`` (login, consent, patient picker; PKCE S256 required), ``token``
  (authorization_code, refresh_token with rotation, client_credentials with a signed client
  assertion), ``introspect``, ``revoke``, ``jwks``.
* Users with roles (``super_admin``, ``app_admin``, ``org_admin``, ``clinician``, ``patient``)
  in tenants (Organizations), invited by email; ``fhirhub users|clients|tenants`` commands; an
  administration page in the UI shell.

With auth on and no users yet, start-up creates ``admin`` (super_admin) with a random
password, printed once and written to ``<data_dir>/initial-admin.txt`` (mode 0600).
"""

from __future__ import annotations

import logging
import os
import secrets
from typing import Any

from fhirhub.sdk import Access, Hub, hookimpl

__version__ = "1.0.0"
PLUGIN_NAME = "security"
MANIFEST = {"resource_types": ["Organization", "Patient"], "scopes": ["system/Organization.cruds"]}

log = logging.getLogger("fhirhub.security")

#: Paths under this plugin that need no token: the OAuth endpoints and the login pages.
PUBLIC = (
    "/plugins/security/authorize",
    "/plugins/security/token",
    "/plugins/security/revoke",
    "/plugins/security/jwks",
    "/plugins/security/invite/",
    "/plugins/security/ui/",
    "/plugins/security/static/",
)


def _auth_on(hub: Hub) -> bool:
    return bool(hub.settings.auth_enabled)


@hookimpl
def startup(hub: Hub) -> None:
    from fhirhub.plugins.security.clients import ensure_shell_client
    from fhirhub.plugins.security.state import security

    sec = security(hub)
    ensure_shell_client(sec)
    if _auth_on(hub):
        create_initial_admin(hub)


def create_initial_admin(hub: Hub) -> str | None:
    """On first start with no users, create ``admin`` (super_admin) with a random password;
    print it once and write it to ``<data_dir>/initial-admin.txt``. Returns the password."""
    from fhirhub.plugins.security.state import security
    from fhirhub.plugins.security.users import count_users, create_user
    from fhirhub.sdk import FhirError

    sec = security(hub)
    if count_users(sec) > 0:
        return None
    password = secrets.token_urlsafe(15)
    try:
        create_user(sec, "admin", role="super_admin", password=password)
    except FhirError:  # another process created it first
        return None
    path = hub.settings.data_dir / "initial-admin.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"user: admin\npassword: {password}\n")
    banner = (
        "\n" + "=" * 72 + "\n"
        f"  First start: created the super_admin 'admin' with password {password}\n"
        f"  (also in {path}; change it with `fhirhub users set-password admin`)\n" + "=" * 72
    )
    print(banner, flush=True)
    return password


@hookimpl
def authenticate_request(request: Any, hub: Hub) -> Access | None:
    from fhirhub.plugins.security.authenticate import authenticate
    from fhirhub.plugins.security.state import security

    return authenticate(security(hub), request)


@hookimpl
def capability_security(hub: Hub, base_url: str) -> dict[str, Any] | None:
    """SMART App Launch §2.4: the OAuth endpoints in ``rest.security`` of the metadata."""
    from fhirhub.plugins.security.routes import endpoints

    if not _auth_on(hub):
        return None
    origin = base_url.rstrip("/").removesuffix("/fhir")
    urls = endpoints(origin)
    names = {
        "authorize": "authorization_endpoint",
        "token": "token_endpoint",
        "introspect": "introspection_endpoint",
        "revoke": "revocation_endpoint",
    }
    return {
        "extension": [
            {
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [{"url": name, "valueUri": urls[key]} for name, key in names.items()],
            }
        ],
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ]
            }
        ],
        "description": "OAuth 2 bearer tokens per SMART App Launch 2.0 and Backend Services",
    }


@hookimpl
def public_paths(hub: Hub) -> list[str]:
    return list(PUBLIC)


@hookimpl
def register_routes(hub: Hub) -> Any:
    from fhirhub.plugins.security.admin import admin_router
    from fhirhub.plugins.security.launch import launch_router
    from fhirhub.plugins.security.routes import router

    return [*router(hub), admin_router(hub), launch_router(hub)]


@hookimpl
def ui_pages(hub: Hub) -> list[dict[str, Any]]:
    return [
        {"path": "/plugins/security/ui/admin", "title": "Administration", "icon": "⚙", "order": 95}
    ]


@hookimpl
def register_commands(cli: Any) -> None:
    from fhirhub.plugins.security.cli import add_commands

    add_commands(cli)
