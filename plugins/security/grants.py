"""The OAuth 2 grants, without HTTP: authorization code with PKCE (RFC 6749 §4.1, RFC 7636),
refresh tokens with rotation (OAuth 2.0 Security BCP, RFC 9700 §4.14), client credentials
for SMART Backend Services, introspection (RFC 7662) and revocation (RFC 7009).

Codes, refresh tokens and invitation links are random 256-bit values stored as SHA-256
hashes; each is single-use. Presenting a refresh token a second time revokes its whole family
(the rotation chain), since one of the two presenters must be a thief.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from joserfc import jwt
from sqlalchemy import insert, select, update

from fhirhub.plugins.security.clients import Client, OAuthError
from fhirhub.plugins.security.keys import ID_TOKEN_ALGORITHM
from fhirhub.plugins.security.roles import (
    ROLES,
    grant,
    narrow,
    role_grant,
    without_patient_scopes,
)
from fhirhub.plugins.security.state import Security, digest, now, random_token
from fhirhub.plugins.security.tables import (
    codes,
    issued_tokens,
    refresh_tokens,
    revoked_tokens,
)
from fhirhub.plugins.security.tokens import (
    issue_access_token,
    unverified_header,
    verify_access_token,
)
from fhirhub.plugins.security.users import User, get_user
from fhirhub.sdk import FhirError


def pkce_s256(verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL(SHA256(ASCII(code_verifier))) without padding."""
    hashed = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(hashed).rstrip(b"=").decode("ascii")


def user_scope(user: User, requested: str) -> str:
    """The scopes a user gets of ``requested`` (the role's allowance). ``fhirUser`` only for a
    user who has a FHIR resource (a Practitioner, a Patient...) to name."""
    granted = role_grant(requested, [user.role]).split()
    if user.fhir_user_claim is None:
        granted = [w for w in granted if w != "fhirUser"]
    return " ".join(granted)


def issue_code(
    sec: Security,
    *,
    client: Client,
    redirect_uri: str,
    user: User,
    scope: str,
    patient: str | None,
    code_challenge: str,
) -> str:
    code = random_token()
    with sec.engine.begin() as conn:
        conn.execute(
            insert(codes).values(
                code_hash=digest(code),
                client_id=client.client_id,
                redirect_uri=redirect_uri,
                user_id=user.id,
                scope=scope,
                patient=patient,
                code_challenge=code_challenge,
                expires=now() + sec.config.code_seconds,
                used=False,
            )
        )
    return code


def code_family(code_hash: str) -> str:
    """The grant family of the tokens an authorization code gives: derived from the code's
    hash, so that a replayed code finds (and revokes) what it gave the first time."""
    return digest(f"family:{code_hash}")[:32]


def revoke_family(conn: Any, family: str) -> None:
    """Revoke every refresh token and every still valid access token of a grant family."""
    conn.execute(
        update(refresh_tokens).where(refresh_tokens.c.family == family).values(revoked=True)
    )
    moment = now()
    issued = conn.execute(
        select(issued_tokens.c.jti, issued_tokens.c.expires).where(
            issued_tokens.c.family == family, issued_tokens.c.expires >= moment
        )
    ).all()
    already = {
        row.jti
        for row in conn.execute(
            select(revoked_tokens.c.jti).where(revoked_tokens.c.jti.in_([r.jti for r in issued]))
        )
    }
    for row in issued:
        if row.jti not in already:
            conn.execute(insert(revoked_tokens).values(jti=row.jti, expires=row.expires))


def exchange_code(
    sec: Security, client: Client, form: dict[str, str], audience: str
) -> dict[str, Any]:
    code = form.get("code") or ""
    verifier = form.get("code_verifier") or ""
    with sec.engine.connect().execution_options(**sec.write_options()) as conn, conn.begin():
        row = conn.execute(select(codes).where(codes.c.code_hash == digest(code))).first()
        if row is not None and row.used:
            # RFC 6749 §4.1.2: a code used twice revokes the tokens it gave (one of the two
            # presenters stole it).
            revoke_family(conn, code_family(row.code_hash))
        elif row is not None:
            conn.execute(update(codes).where(codes.c.code_hash == row.code_hash).values(used=True))
    if row is None or row.used or row.expires < now():
        raise OAuthError("invalid_grant", "The authorization code is unknown, used or expired")
    if row.client_id != client.client_id:
        raise OAuthError("invalid_grant", "The code was issued to another client")
    if form.get("redirect_uri") != row.redirect_uri:
        raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request")
    if not verifier or not hmac.compare_digest(pkce_s256(verifier), row.code_challenge):
        raise OAuthError(
            "invalid_grant", "The PKCE code_verifier does not match the code_challenge"
        )
    user = get_user(sec, row.user_id)
    if user is None or user.disabled:
        raise OAuthError("invalid_grant", "The user is disabled")
    return user_tokens(
        sec, client, user, row.scope, row.patient, audience, code_family(row.code_hash)
    )


def user_tokens(
    sec: Security,
    client: Client,
    user: User,
    scope: str,
    patient: str | None,
    audience: str,
    family: str,
) -> dict[str, Any]:
    """The token response for a user (RFC 6749 §5.1 plus SMART's launch context)."""
    scope = user_scope(user, scope)  # again: the role may have changed since the code
    if user.role == "patient":
        patient = user.patient
    if not patient:  # patient-level scopes without a patient would reach the whole tenant
        scope = without_patient_scopes(scope)
    tenant = user.tenant if ROLES[user.role].tenant_bound else None
    token, claims = issue_access_token(
        sec,
        audience=audience,
        subject=user.id,
        scope=scope,
        client_id=client.client_id,
        roles=[user.role],
        tenant=tenant,
        patient=patient,
        fhir_user=user.fhir_user_claim,
        username=user.username,
    )
    with sec.engine.begin() as conn:
        conn.execute(
            insert(issued_tokens).values(jti=claims["jti"], family=family, expires=claims["exp"])
        )
    response: dict[str, Any] = {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": claims["exp"] - claims["iat"],
        "scope": scope,
    }
    if patient:
        response["patient"] = patient
        response["need_patient_banner"] = user.role != "patient"
    if tenant:
        response["tenant"] = tenant
    words = scope.split()
    if "offline_access" in words or "online_access" in words:
        lifetime = (
            sec.config.offline_refresh_seconds
            if "offline_access" in words
            else sec.config.online_refresh_seconds
        )
        refresh = random_token()
        with sec.engine.begin() as conn:
            conn.execute(
                insert(refresh_tokens).values(
                    token_hash=digest(refresh),
                    family=family,
                    client_id=client.client_id,
                    user_id=user.id,
                    scope=scope,
                    patient=patient,
                    expires=now() + lifetime,
                    used=False,
                    revoked=False,
                )
            )
        response["refresh_token"] = refresh
    if "openid" in words:
        response["id_token"] = id_token(sec, client, user, audience, "fhirUser" in words)
    return response


def id_token(
    sec: Security, client: Client, user: User, issuer: str, with_fhir_user: bool = True
) -> str:
    """An OpenID Connect ID token (SMART's ``openid fhirUser``), signed RS256 with the ID-token
    key; ``fhirUser`` (the absolute URL of the user's FHIR resource) when that scope was
    granted."""
    moment = now()
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": user.id,
        "aud": client.client_id,
        "iat": moment,
        "exp": moment + sec.config.access_token_seconds,
        "preferred_username": user.username,
    }
    if with_fhir_user and user.fhir_user_claim:
        claims["fhirUser"] = f"{issuer}/{user.fhir_user_claim}"
    return jwt.encode(
        {"alg": ID_TOKEN_ALGORITHM, "kid": sec.id_key.kid, "typ": "JWT"},
        claims,
        sec.id_key,
        algorithms=[ID_TOKEN_ALGORITHM],
    )


def refresh(sec: Security, client: Client, form: dict[str, str], audience: str) -> dict[str, Any]:
    presented = form.get("refresh_token") or ""
    with sec.engine.connect().execution_options(**sec.write_options()) as conn, conn.begin():
        row = conn.execute(
            select(refresh_tokens).where(refresh_tokens.c.token_hash == digest(presented))
        ).first()
        if row is not None and row.used and not row.revoked:
            # Reuse of a rotated token: revoke the family, the legitimate holder signs in again.
            revoke_family(conn, row.family)
        elif row is not None and not row.revoked:
            conn.execute(
                update(refresh_tokens)
                .where(refresh_tokens.c.token_hash == row.token_hash)
                .values(used=True)
            )
    if row is None or row.used or row.revoked or row.expires < now():
        raise OAuthError("invalid_grant", "The refresh token is unknown, used, revoked or expired")
    if row.client_id != client.client_id:
        raise OAuthError("invalid_grant", "The refresh token was issued to another client")
    user = get_user(sec, row.user_id)
    if user is None or user.disabled:
        raise OAuthError("invalid_grant", "The user is disabled")
    scope = row.scope
    if form.get("scope"):  # RFC 6749 §6: a narrower scope may be asked for, never a wider one
        scope = narrow(form["scope"], row.scope)
    return user_tokens(sec, client, user, scope, row.patient, audience, row.family)


def refresh_token_client(sec: Security, presented: str) -> str:
    """The client a refresh token was issued to ("" when unknown): public clients are
    identified by their refresh token (RFC 6749 §6 requires authentication only of
    confidential clients)."""
    with sec.engine.connect() as conn:
        row = conn.execute(
            select(refresh_tokens.c.client_id).where(
                refresh_tokens.c.token_hash == digest(presented)
            )
        ).first()
    return str(row.client_id) if row is not None else ""


def client_credentials(
    sec: Security, client: Client, form: dict[str, str], audience: str
) -> dict[str, Any]:
    """SMART Backend Services: ``system/`` scopes as registered for the client."""
    if client.public:
        raise OAuthError("unauthorized_client", "Public clients cannot use client_credentials")
    requested = form.get("scope") or client.scopes
    scope = " ".join(
        s for s in grant(requested, client.scopes.split()).split() if s.startswith("system/")
    )
    if not scope:
        raise OAuthError(
            "invalid_scope", f"None of the requested scopes is registered for {client.client_id}"
        )
    if client.tenant is None and not client.all_tenants:
        raise OAuthError("unauthorized_client", "The client is registered for no tenant")
    token, claims = issue_access_token(
        sec,
        audience=audience,
        subject=client.client_id,
        scope=scope,
        client_id=client.client_id,
        tenant=client.tenant,
    )
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": claims["exp"] - claims["iat"],
        "scope": scope,
    }


def introspect(sec: Security, token: str, audience: str) -> dict[str, Any]:
    """RFC 7662 §2.2: ``{"active": false}`` for anything not currently valid."""
    if token.count(".") == 2:
        try:
            claims = verify_access_token(sec, token, audience)
        except FhirError:
            return {"active": False}
        answer = {"active": True, "token_type": "Bearer", **claims}
        if "username" in claims:
            answer["username"] = claims["username"]
        return answer
    with sec.engine.connect() as conn:
        row = conn.execute(
            select(refresh_tokens).where(refresh_tokens.c.token_hash == digest(token))
        ).first()
    if row is None or row.used or row.revoked or row.expires < now():
        return {"active": False}
    return {
        "active": True,
        "token_type": "refresh_token",
        "client_id": row.client_id,
        "sub": row.user_id,
        "scope": row.scope,
        "exp": row.expires,
    }


def revoke(sec: Security, token: str, client_id: str | None, audience: str) -> None:
    """RFC 7009: revoke an access token (its ``jti``) or a refresh token (its family). Unknown
    tokens are not an error (§2.2)."""
    if token.count(".") == 2:
        try:
            header = unverified_header(token)
            if header.get("kid") != sec.key.kid:
                return
            claims = verify_access_token(sec, token, audience)
        except FhirError:
            return
        if client_id and claims.get("client_id") != client_id:
            return
        with sec.engine.begin() as conn:
            exists = conn.execute(
                select(revoked_tokens.c.jti).where(revoked_tokens.c.jti == claims["jti"])
            ).first()
            if exists is None:
                conn.execute(
                    insert(revoked_tokens).values(jti=claims["jti"], expires=claims["exp"])
                )
        return
    with sec.engine.begin() as conn:
        row = conn.execute(
            select(refresh_tokens).where(refresh_tokens.c.token_hash == digest(token))
        ).first()
        if row is None or (client_id and row.client_id != client_id):
            return
        conn.execute(
            update(refresh_tokens).where(refresh_tokens.c.family == row.family).values(revoked=True)
        )
