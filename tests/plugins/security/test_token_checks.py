"""Every request's token check: expired, forged (alg none, HS256 keyed with the public key,
another key), wrong-audience, revoked and disabled-user tokens are all refused with 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from fhirhub.plugins.security.state import Security
from fhirhub.plugins.security.tokens import issue_access_token
from fhirhub.plugins.security.users import find_user, set_disabled
from tests.plugins.security.conftest import FHIR, bearer, login


def claims(sec: Security, **overrides: Any) -> dict[str, Any]:
    moment = int(time.time())
    return {
        "iss": FHIR,
        "aud": FHIR,
        "sub": "x",
        "iat": moment,
        "exp": moment + 300,
        "jti": "j-" + str(moment),
        "scope": "system/*.cruds",
        "client_id": "forger",
        **overrides,
    }


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def assert_refused(client: Any, token: str, reason: str) -> None:
    response = client.get("/fhir/Patient", headers=bearer(token))
    assert response.status_code == 401, response.text
    assert reason in response.json()["issue"][0]["diagnostics"]
    assert "invalid_token" in response.headers["WWW-Authenticate"]


def test_a_valid_token_is_accepted(secure_client: Any, sec: Security, app_client: str) -> None:
    from fhirhub.plugins.security.clients import register_client

    register_client(
        sec,
        "backend",
        jwks={"keys": [ECKey.generate_key("P-384").as_dict(private=False)]},
        scopes="system/*.rs",
        all_tenants=True,
    )
    token, _ = issue_access_token(
        sec, audience=FHIR, subject="backend", scope="system/*.rs", client_id="backend"
    )
    assert secure_client.get("/fhir/Patient", headers=bearer(token)).status_code == 200


def test_an_expired_token_is_refused(secure_client: Any, sec: Security) -> None:
    token, _ = issue_access_token(
        sec, audience=FHIR, subject="s", scope="user/*.rs", client_id="c", lifetime=-120
    )
    assert_refused(secure_client, token, "expired")


def test_alg_none_is_refused(secure_client: Any, sec: Security) -> None:
    token = f"{b64({'alg': 'none', 'kid': sec.key.kid})}.{b64(claims(sec))}."
    assert_refused(secure_client, token, "Invalid access token")


def test_hs256_keyed_with_the_public_key_is_refused(secure_client: Any, sec: Security) -> None:
    """The classic key-confusion forgery: HMAC with the published public key as the secret
    (signed by hand: joserfc itself refuses to build such a key)."""
    public_pem = sec.key.as_pem(private=False)
    signing_input = f"{b64({'alg': 'HS256', 'kid': sec.key.kid})}.{b64(claims(sec))}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert_refused(secure_client, token, "signature or algorithm")


def test_a_token_signed_by_another_key_is_refused(secure_client: Any, sec: Security) -> None:
    other = ECKey.generate_key("P-256")
    # Claiming our kid, signed with someone else's key.
    token = jwt.encode(
        {"alg": "ES256", "kid": sec.key.kid}, claims(sec), other, algorithms=["ES256"]
    )
    assert_refused(secure_client, token, "signature")
    # An unknown kid and issuer.
    token = jwt.encode(
        {"alg": "ES256", "kid": "other"},
        claims(sec, iss="https://evil.example"),
        other,
        algorithms=["ES256"],
    )
    assert_refused(secure_client, token, "unknown issuer")


def test_a_token_for_another_audience_is_refused(secure_client: Any, sec: Security) -> None:
    token, _ = issue_access_token(
        sec,
        audience="https://other-hub.example/fhir",
        subject="s",
        scope="user/*.rs",
        client_id="c",
    )
    assert_refused(secure_client, token, "")


def test_garbage_and_wrong_schemes_are_refused(secure_client: Any) -> None:
    assert secure_client.get("/fhir/Patient", headers=bearer("not-a-jwt")).status_code == 401
    response = secure_client.get(
        "/fhir/Patient", headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"}
    )
    assert response.status_code == 401


def test_a_disabled_users_token_stops_working(
    secure_client: Any, sec: Security, app_client: str, clinician: str
) -> None:
    token = login(secure_client, clinician)["access_token"]
    assert secure_client.get("/fhir/Patient", headers=bearer(token)).status_code == 200
    user = find_user(sec, clinician)
    assert user is not None
    set_disabled(sec, user.id)
    assert_refused(secure_client, token, "disabled")


@pytest.mark.parametrize(
    "path", ["/fhir/metadata", "/fhir/.well-known/smart-configuration", "/healthz"]
)
def test_public_paths_need_no_token(secure_client: Any, path: str) -> None:
    assert secure_client.get(path).status_code == 200
