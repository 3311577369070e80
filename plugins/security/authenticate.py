"""Turning a request's bearer token into an :class:`Access`.

Tokens signed with the hub's own key are verified locally; when an external OpenID Connect
issuer is configured (``FHIRHUB_OIDC_ISSUER`` and ``FHIRHUB_OIDC_JWKS_URL``), tokens whose
``iss`` names it are verified with its JWKS (fetched by URL, cached, refetched once on an
unknown ``kid`` for key rotation). Its claims map as: ``scope`` (or ``scp``), ``roles`` (or
``fhirhub_roles``), ``tenant``, ``patient``, ``fhirUser``; scopes are limited by the roles
exactly as for local users. Anything else is refused with 401.
"""

from __future__ import annotations

from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from fhirhub.plugins.security.clients import OAuthError, fetch_jwks
from fhirhub.plugins.security.roles import ROLES, role_grant
from fhirhub.plugins.security.state import Security
from fhirhub.plugins.security.tokens import (
    access_from_claims,
    check_claims,
    invalid_token,
    unverified_claims,
    unverified_header,
    verify_access_token,
)
from fhirhub.sdk import Access, FhirError

#: Algorithms accepted from an external issuer (never ``none`` or HMAC: a public key set
#: cannot verify a shared-secret signature, and accepting HS* invites key confusion).
OIDC_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384"]


def bearer_token(request: Any) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise FhirError(
            401, "Send the access token as 'Authorization: Bearer <token>'", code="login"
        )
    return str(value).strip()


def authenticate(sec: Security, request: Any) -> Access | None:
    token = bearer_token(request)
    if token is None:
        return None
    remote = request.client.host if request.client else None
    audience = sec.fhir_base(request)
    header = unverified_header(token)
    if header.get("kid") == sec.key.kid:
        return access_from_claims(verify_access_token(sec, token, audience), remote)
    issuer = sec.config.oidc_issuer
    if issuer and unverified_claims(token).get("iss") == issuer:
        return access_from_claims(verify_external(sec, token, audience), remote)
    raise invalid_token("signed by an unknown issuer or key")


def verify_external(sec: Security, token: str, audience: str) -> dict[str, Any]:
    config = sec.config
    if not config.oidc_jwks_url:
        raise invalid_token("the external issuer has no FHIRHUB_OIDC_JWKS_URL")
    claims: dict[str, Any] | None = None
    for attempt in range(2):
        try:
            document: Any = fetch_jwks(sec, config.oidc_jwks_url, refresh=attempt == 1)
            keys = KeySet.import_key_set(document)
            claims = dict(jwt.decode(token, keys, algorithms=OIDC_ALGORITHMS).claims)
            break
        except OAuthError as exc:
            raise invalid_token(exc.description) from exc
        except (JoseError, ValueError) as exc:
            if attempt == 1:
                raise invalid_token(f"bad signature or algorithm ({exc})") from exc
    assert claims is not None
    check_claims(claims, issuer=config.oidc_issuer, audience=config.oidc_audience or audience)
    roles = claims.get("roles", claims.get("fhirhub_roles")) or []
    if isinstance(roles, str):
        roles = roles.split()
    roles = [r for r in roles if r in ROLES]
    requested = claims.get("scope", claims.get("scp")) or ""
    if isinstance(requested, list):
        requested = " ".join(requested)
    tenant = claims.get("tenant")
    if any(ROLES[r].tenant_bound for r in roles):
        if not isinstance(tenant, str) or not tenant:
            raise invalid_token("a tenant-bound role needs a 'tenant' claim")
    else:
        tenant = None
    patient = claims.get("patient")
    if "patient" in roles and not patient:
        raise invalid_token("a patient token needs a 'patient' claim")
    return {
        **claims,
        "scope": role_grant(str(requested), roles),
        "roles": roles,
        "tenant": tenant,
        "username": claims.get("preferred_username") or claims.get("sub"),
        "client_id": claims.get("azp") or claims.get("client_id"),
    }
