"""The OAuth 2 flows end to end over the app's HTTP interface: authorization code with PKCE,
refresh rotation, SMART discovery, introspection and revocation."""

from __future__ import annotations

from typing import Any

from fhirhub.plugins.security.state import Security
from tests.plugins.security.conftest import (
    APP_REDIRECT,
    FHIR,
    PASSWORD,
    authorize_params,
    bearer,
    get_code,
    login,
    pkce_pair,
)


def test_smart_configuration_lists_the_endpoints(secure_client: Any) -> None:
    config = secure_client.get("/fhir/.well-known/smart-configuration").json()
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert config["token_endpoint"] == "http://testserver/plugins/security/token"
    assert config["issuer"] == FHIR
    assert "client-confidential-asymmetric" in config["capabilities"]
    assert "permission-v2" in config["capabilities"]
    keys = secure_client.get(config["jwks_uri"].removeprefix("http://testserver")).json()
    assert keys["keys"][0]["kty"] == "EC" and "d" not in keys["keys"][0]
    # The same endpoints in the CapabilityStatement (SMART App Launch, rest.security).
    security = secure_client.get("/fhir/metadata").json()["rest"][0]["security"]
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert uris["token"] == config["token_endpoint"]
    assert uris["authorize"] == config["authorization_endpoint"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"


def test_without_a_token_the_api_answers_401(secure_client: Any) -> None:
    response = secure_client.get("/fhir/Patient")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_authorization_code_with_pkce_gives_a_working_token(
    secure_client: Any, app_client: str, clinician: str
) -> None:
    tokens = login(secure_client, clinician, scope="user/*.cruds openid fhirUser")
    assert tokens["token_type"] == "Bearer"
    # fhirUser is not granted: this clinician has no FHIR resource (Practitioner) to name.
    assert tokens["scope"] == "user/*.cruds openid"
    assert tokens["tenant"] == "hospital-a"
    assert "id_token" in tokens
    response = secure_client.get("/fhir/Patient", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200, response.text


def test_a_wrong_pkce_verifier_is_rejected(
    secure_client: Any, app_client: str, clinician: str
) -> None:
    _verifier, challenge = pkce_pair()
    params = authorize_params(challenge, "user/*.rs")
    code = get_code(secure_client, clinician, PASSWORD, params)
    other_verifier, _ = pkce_pair()
    response = secure_client.post(
        "/plugins/security/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": APP_REDIRECT,
            "client_id": "chart-app",
            "code_verifier": other_verifier,
        },
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_refresh_rotates_and_an_old_refresh_token_is_refused(
    secure_client: Any, app_client: str, clinician: str
) -> None:
    first = login(secure_client, clinician)
    refresh = {"grant_type": "refresh_token", "client_id": "chart-app"}
    second = secure_client.post(
        "/plugins/security/token", data={**refresh, "refresh_token": first["refresh_token"]}
    )
    assert second.status_code == 200
    rotated = second.json()["refresh_token"]
    assert rotated != first["refresh_token"]
    reused = secure_client.post(
        "/plugins/security/token", data={**refresh, "refresh_token": first["refresh_token"]}
    )
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    # Reuse revoked the whole family: the rotated token is dead too.
    after = secure_client.post(
        "/plugins/security/token", data={**refresh, "refresh_token": rotated}
    )
    assert after.status_code == 400


def test_scopes_are_limited_by_the_role(
    secure_client: Any, app_client: str, sec: Security, tenant_a: str
) -> None:
    from fhirhub.plugins.security.users import create_user

    create_user(sec, "orgadmin", role="org_admin", tenant=tenant_a, password=PASSWORD)
    tokens = login(secure_client, "orgadmin", scope="user/*.cruds")
    granted = tokens["scope"].split()
    assert "user/Endpoint.cruds" in granted and "user/Organization.rs" in granted
    assert not any(s.startswith("user/Observation") or s == "user/*.cruds" for s in granted)


def test_introspection_and_revocation(secure_client: Any, app_client: str, clinician: str) -> None:
    tokens = login(secure_client, clinician)
    access = tokens["access_token"]
    answer = secure_client.post(
        "/plugins/security/introspect", data={"token": access}, headers=bearer(access)
    ).json()
    assert answer["active"] is True and answer["username"] == clinician
    assert answer["tenant"] == "hospital-a"
    refresh_answer = secure_client.post(
        "/plugins/security/introspect",
        data={"token": tokens["refresh_token"]},
        headers=bearer(access),
    ).json()
    assert refresh_answer["active"] is True and refresh_answer["token_type"] == "refresh_token"

    revoked = secure_client.post(
        "/plugins/security/revoke", data={"token": access, "client_id": "chart-app"}
    )
    assert revoked.status_code == 200
    response = secure_client.get("/fhir/Patient", headers=bearer(access))
    assert response.status_code == 401
    assert "revoked" in response.json()["issue"][0]["diagnostics"]
