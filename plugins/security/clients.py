"""Registered client applications and their authentication.

* public clients (browser and native apps, the UI shell): ``client_id`` only, and PKCE;
* confidential asymmetric clients and SMART Backend Services
  (https://hl7.org/fhir/smart-app-launch/backend-services.html): ``private_key_jwt``
  (RFC 7523): a client assertion JWT signed with a key from the client's registered JWKS or
  ``jwks_uri``, RS384 or ES384, ``iss`` = ``sub`` = client_id, ``aud`` = the token endpoint,
  ``exp`` at most five minutes ahead, and a ``jti`` never seen before from that client.

A redirect URI registered as a path (``/plugins/security/ui/callback``) means that path on
the hub's own origin, whatever host name it is reached by.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from fhirhub.plugins.security.state import Security, now
from fhirhub.plugins.security.tables import clients, used_assertions
from fhirhub.plugins.security.tokens import LEEWAY, unverified_claims
from fhirhub.sdk import FhirError

log = logging.getLogger("fhirhub.security")

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: SMART Backend Services: servers SHALL support RS384 and ES384.
ASSERTION_ALGORITHMS = ["RS384", "ES384"]
#: The UI shell's own public client.
SHELL_CLIENT_ID = "fhirhub-ui"
SHELL_CALLBACK = "/plugins/security/ui/callback"


class OAuthError(Exception):
    """An OAuth 2 error response (RFC 6749 §5.2): ``error`` code, description, status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True)
class Client:
    client_id: str
    name: str
    public: bool
    redirect_uris: tuple[str, ...]
    scopes: str
    jwks: dict[str, Any] | None
    jwks_url: str | None
    tenant: str | None
    all_tenants: bool

    def redirect_allowed(self, uri: str, origin: str) -> bool:
        return any(
            uri == (f"{origin}{registered}" if registered.startswith("/") else registered)
            for registered in self.redirect_uris
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "name": self.name,
            "public": self.public,
            "redirect_uris": list(self.redirect_uris),
            "scopes": self.scopes,
            "jwks_url": self.jwks_url,
            "has_jwks": self.jwks is not None,
            "tenant": self.tenant,
            "all_tenants": self.all_tenants,
        }


def _client(row: Any) -> Client:
    return Client(
        row.client_id,
        row.name,
        bool(row.public),
        tuple(json.loads(row.redirect_uris or "[]")),
        row.scopes or "",
        json.loads(row.jwks) if row.jwks else None,
        row.jwks_url,
        row.tenant,
        bool(row.all_tenants),
    )


def register_client(
    sec: Security,
    client_id: str,
    *,
    name: str | None = None,
    public: bool = False,
    redirect_uris: list[str] | tuple[str, ...] = (),
    scopes: str = "",
    jwks: dict[str, Any] | None = None,
    jwks_url: str | None = None,
    tenant: str | None = None,
    all_tenants: bool = False,
) -> Client:
    if not public and jwks is None and not jwks_url:
        raise FhirError(400, "A confidential client needs a JWKS (--jwks-file) or --jwks-url")
    if jwks is not None:
        KeySet.import_key_set(jwks)  # type: ignore[arg-type]  # fails early on a malformed key set
    if tenant and all_tenants:
        raise FhirError(400, "A client acts either for one tenant or for all tenants")
    try:
        with sec.engine.begin() as conn:
            conn.execute(
                insert(clients).values(
                    client_id=client_id,
                    name=name or client_id,
                    public=public,
                    redirect_uris=json.dumps(list(redirect_uris)),
                    scopes=scopes,
                    jwks=json.dumps(jwks) if jwks is not None else None,
                    jwks_url=jwks_url,
                    tenant=tenant,
                    all_tenants=all_tenants,
                    created=now(),
                )
            )
    except IntegrityError as exc:
        raise FhirError(409, f"The client id {client_id!r} is taken", code="duplicate") from exc
    found = get_client(sec, client_id)
    assert found is not None
    return found


def ensure_shell_client(sec: Security) -> None:
    """Register the UI shell's public client once (authorization code + PKCE in the browser)."""
    if get_client(sec, SHELL_CLIENT_ID) is None:
        try:
            register_client(
                sec,
                SHELL_CLIENT_ID,
                name="fhirhub UI shell",
                public=True,
                redirect_uris=[SHELL_CALLBACK],
                scopes="user/*.cruds patient/*.rs",
            )
        except FhirError:  # registered by another process meanwhile
            pass


def get_client(sec: Security, client_id: str) -> Client | None:
    with sec.engine.connect() as conn:
        row = conn.execute(select(clients).where(clients.c.client_id == client_id)).first()
    return _client(row) if row is not None else None


def list_clients(sec: Security) -> list[Client]:
    with sec.engine.connect() as conn:
        return [_client(row) for row in conn.execute(select(clients).order_by(clients.c.client_id))]


def remove_client(sec: Security, client_id: str) -> bool:
    with sec.engine.begin() as conn:
        return bool(conn.execute(delete(clients).where(clients.c.client_id == client_id)).rowcount)


def fetch_jwks(sec: Security, url: str, *, refresh: bool = False) -> dict[str, Any]:
    """A JWKS by URL, cached for ``oidc_jwks_cache_seconds``."""
    with sec.lock:
        cached = sec.jwks_cache.get(url)
    if (
        cached is not None
        and not refresh
        and time.monotonic() - cached[0] < sec.config.oidc_jwks_cache_seconds
    ):
        return cached[1]
    try:
        response = httpx.get(url, timeout=5, follow_redirects=False)
        response.raise_for_status()
        document: dict[str, Any] = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise OAuthError(
            "invalid_client", f"The key set at {url} could not be fetched: {exc}", 401
        ) from exc
    with sec.lock:
        sec.jwks_cache[url] = (time.monotonic(), document)
    return document


def authenticate_client(sec: Security, form: dict[str, str], token_endpoint: str) -> Client:
    """The client a token-endpoint request comes from (RFC 6749 §2.3, RFC 7523 §3)."""
    assertion = form.get("client_assertion")
    if assertion:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise OAuthError(
                "invalid_client", f"client_assertion_type must be {ASSERTION_TYPE}", 401
            )
        return _verify_assertion(sec, assertion, token_endpoint, form.get("client_id"))
    client_id = form.get("client_id") or ""
    client = get_client(sec, client_id)
    if client is None:
        raise OAuthError("invalid_client", f"Unknown client {client_id!r}", 401)
    if not client.public:
        raise OAuthError(
            "invalid_client", "This client must authenticate with a client assertion", 401
        )
    return client


def _verify_assertion(
    sec: Security, assertion: str, token_endpoint: str, claimed_id: str | None
) -> Client:
    try:
        unverified = unverified_claims(assertion)
    except FhirError as exc:
        raise OAuthError("invalid_client", "The client assertion is not a JWT", 401) from exc
    client_id = str(unverified.get("iss") or "")
    if claimed_id and claimed_id != client_id:
        raise OAuthError("invalid_client", "client_id and the assertion's issuer differ", 401)
    client = get_client(sec, client_id)
    if client is None or client.public:
        raise OAuthError("invalid_client", f"Unknown confidential client {client_id!r}", 401)
    claims = _decode_with_client_keys(sec, client, assertion)
    moment = now()
    if claims.get("sub") != client_id:
        raise OAuthError("invalid_client", "The assertion's sub must be the client_id", 401)
    aud = claims.get("aud")
    if token_endpoint not in (aud if isinstance(aud, list) else [aud]):
        raise OAuthError("invalid_client", f"The assertion's aud must be {token_endpoint}", 401)
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or exp + LEEWAY < moment:
        raise OAuthError("invalid_client", "The client assertion has expired", 401)
    if exp > moment + sec.config.max_assertion_seconds + LEEWAY:
        raise OAuthError(
            "invalid_client", "The client assertion may be valid for at most five minutes", 401
        )
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise OAuthError("invalid_client", "The client assertion has no jti", 401)
    try:
        with sec.engine.begin() as conn:
            conn.execute(delete(used_assertions).where(used_assertions.c.expires < moment - LEEWAY))
            conn.execute(
                insert(used_assertions).values(client_id=client_id, jti=jti, expires=int(exp))
            )
    except IntegrityError as exc:
        raise OAuthError(
            "invalid_client", "This client assertion (jti) was already used", 401
        ) from exc
    return client


def _decode_with_client_keys(sec: Security, client: Client, assertion: str) -> dict[str, Any]:
    for attempt in range(2):
        if client.jwks is not None:
            document = client.jwks
        elif client.jwks_url:
            document = fetch_jwks(sec, client.jwks_url, refresh=attempt == 1)
        else:
            break
        try:
            keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
            decoded = jwt.decode(assertion, keys, algorithms=ASSERTION_ALGORITHMS)
            return dict(decoded.claims)
        except (JoseError, ValueError) as exc:
            if client.jwks is not None or attempt == 1:
                raise OAuthError(
                    "invalid_client",
                    f"The client assertion's signature does not verify ({exc})",
                    401,
                ) from exc
            # A jwks_uri may have rotated keys since it was cached: fetch once more.
    raise OAuthError("invalid_client", "The client has no keys registered", 401)
