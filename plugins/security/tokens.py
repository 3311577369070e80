"""Access tokens: short-lived JWTs (RFC 9068 style) signed with the hub's key, and the check
every request makes: signature and algorithm, ``exp``, ``iss``, ``aud`` and revocation.

Claims: ``iss`` and ``aud`` (the FHIR base), ``sub``, ``exp``, ``iat``, ``jti``, ``scope``,
``client_id``, ``tenant``, ``roles``, ``patient``, ``fhirUser``, ``username``.
"""

from __future__ import annotations

import uuid
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from sqlalchemy import select

from fhirhub.plugins.security.keys import ALGORITHM
from fhirhub.plugins.security.state import Security, now
from fhirhub.plugins.security.tables import clients, revoked_tokens, users
from fhirhub.sdk import Access, FhirError, parse_scopes

#: Clock skew tolerated between this hub's processes (seconds).
LEEWAY = 30


def invalid_token(text: str) -> FhirError:
    return FhirError(401, f"Invalid access token: {text}", code="login")


def issue_access_token(
    sec: Security,
    *,
    audience: str,
    subject: str,
    scope: str,
    client_id: str,
    roles: list[str] | tuple[str, ...] = (),
    tenant: str | None = None,
    patient: str | None = None,
    fhir_user: str | None = None,
    username: str | None = None,
    lifetime: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """Sign an access token; returns (token, claims)."""
    issued = now()
    claims: dict[str, Any] = {
        "iss": audience,
        "aud": audience,
        "sub": subject,
        "iat": issued,
        "exp": issued + (lifetime or sec.config.access_token_seconds),
        "jti": uuid.uuid4().hex,
        "scope": scope,
        "client_id": client_id,
        "roles": list(roles),
        "tenant": tenant,
        "patient": patient,
        "fhirUser": fhir_user,
        "username": username,
    }
    claims = {k: v for k, v in claims.items() if v is not None}
    header = {"alg": ALGORITHM, "kid": sec.key.kid, "typ": "at+jwt"}
    return jwt.encode(header, claims, sec.key, algorithms=[ALGORITHM]), claims


def unverified_header(token: str) -> dict[str, Any]:
    import base64
    import json

    try:
        head = token.split(".")[0]
        parsed: dict[str, Any] = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except Exception as exc:
        raise invalid_token("not a JWT") from exc
    if not isinstance(parsed, dict):
        raise invalid_token("not a JWT")
    return parsed


def unverified_claims(token: str) -> dict[str, Any]:
    import base64
    import json

    try:
        body = token.split(".")[1]
        parsed: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except Exception as exc:
        raise invalid_token("not a JWT") from exc
    if not isinstance(parsed, dict):
        raise invalid_token("not a JWT")
    return parsed


def check_claims(claims: dict[str, Any], *, issuer: str, audience: str) -> None:
    """``exp`` (with leeway), ``iat`` not in the future, ``iss`` and ``aud``."""
    moment = now()
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or exp + LEEWAY < moment:
        raise invalid_token("expired")
    iat = claims.get("iat")
    if isinstance(iat, int | float) and iat - LEEWAY > moment:
        raise invalid_token("issued in the future")
    if claims.get("iss") != issuer:
        raise invalid_token("unknown issuer")
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if audience not in audiences:
        raise invalid_token(f"wrong audience (this server is {audience})")


def verify_access_token(sec: Security, token: str, audience: str) -> dict[str, Any]:
    """The claims of one of this hub's access tokens, or 401 (signature, algorithm, expiry,
    issuer, audience, revocation, the user or client still enabled)."""
    try:
        decoded = jwt.decode(token, sec.key, algorithms=[ALGORITHM])
    except JoseError as exc:
        raise invalid_token(f"bad signature or algorithm ({exc.error})") from exc
    except ValueError as exc:
        raise invalid_token("malformed") from exc
    claims = dict(decoded.claims)
    check_claims(claims, issuer=audience, audience=audience)
    jti = claims.get("jti")
    if not isinstance(jti, str):
        raise invalid_token("no jti")
    with sec.engine.connect() as conn:
        if conn.execute(select(revoked_tokens.c.jti).where(revoked_tokens.c.jti == jti)).first():
            raise invalid_token("revoked")
        if claims.get("username") is not None:
            row = conn.execute(select(users.c.disabled).where(users.c.id == claims["sub"])).first()
            if row is None or row.disabled:
                raise invalid_token("the user is disabled or removed")
        else:
            row = conn.execute(
                select(clients.c.client_id).where(clients.c.client_id == claims.get("client_id"))
            ).first()
            if row is None:
                raise invalid_token("the client is no longer registered")
    return claims


def access_from_claims(claims: dict[str, Any], remote: str | None) -> Access:
    """The :class:`Access` a verified token stands for."""
    username = claims.get("username")
    subject = f"user:{username}" if username else f"client:{claims.get('client_id')}"
    roles = claims.get("roles") or []
    scopes = parse_scopes(str(claims.get("scope") or ""))
    if not claims.get("patient"):
        # SMART: patient-level scopes need a patient context; without one they would read
        # the whole tenant, so they grant nothing.
        scopes = tuple(s for s in scopes if s.context != "patient")
    return Access(
        subject=subject,
        tenant=claims.get("tenant"),
        roles=frozenset(str(r) for r in roles) if isinstance(roles, list) else frozenset(),
        scopes=scopes,
        patient=claims.get("patient"),
        client_id=claims.get("client_id"),
        remote=remote,
        token_id=claims.get("jti"),
        extra={"claims": claims},
    )
