"""SMART conformance of the authorization server, as real clients meet it (findings 18-20
and 25 of the security review): two tenants, real HTTP, real sign-ins and tokens."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests import backends
from tests.security.auth_world import APP, AuthWorld, auth_world

pytestmark = pytest.mark.xdist_group("auth_smart")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Any) -> Iterator[AuthWorld]:
    data = tmp_path_factory.mktemp("auth-smart")
    with auth_world(data, backends.fresh_sqlite_url(sqlite_template, data / "hub.db")) as w:
        yield w


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- 18: a public client refreshes without client_id --------------------------------------------
def test_a_public_client_refreshes_by_its_refresh_token_alone(world: AuthWorld) -> None:
    first = world.login("clin-a", "user/Patient.rs offline_access")
    answer = world.http.post(
        "/plugins/security/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
    )
    assert answer.status_code == 200, answer.text
    second = answer.json()
    assert second["scope"] == first["scope"]
    assert world.fhir_client(second["access_token"]).get("/Patient").status_code == 200
    # The rotated token still works only once, and a wrong client_id is still refused.
    replay = world.http.post(
        "/plugins/security/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
    )
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    unknown = world.http.post(
        "/plugins/security/token",
        data={"grant_type": "refresh_token", "refresh_token": "not-a-token"},
    )
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_client"


# -- 19: the authorization request sent by POST is no failed sign-in ---------------------------
def test_authorize_post_shows_the_sign_in_page_and_never_locks_out(world: AuthWorld) -> None:
    for _ in range(30):  # more than the per-address allowance of failed sign-ins (20)
        params, _verifier = world.params("user/Patient.rs")
        page = world.http.post("/plugins/security/authorize", data=params)
        assert page.status_code == 200, page.text
        assert 'name="password"' in page.text
    tokens = world.login("clin-b", "user/Patient.rs")  # no 429
    assert tokens["tenant"] == "org-b"


# -- 20: RS256 id_tokens, fhirUser, code replay ---------------------------------------------------
def test_id_tokens_are_rs256_with_fhir_user_and_both_keys_are_published(world: AuthWorld) -> None:
    config = world.http.get("/fhir/.well-known/smart-configuration").json()
    assert "RS256" in config["id_token_signing_alg_values_supported"]
    jwks = world.http.get(config["jwks_uri"].removeprefix(world.base)).json()
    kinds = {(k["kty"], k["alg"]) for k in jwks["keys"]}
    assert {("EC", "ES256"), ("RSA", "RS256")} <= kinds
    assert all("d" not in k for k in jwks["keys"])
    tokens = world.login("clin-a", "openid fhirUser user/Patient.rs")
    assert "fhirUser" in tokens["scope"].split()
    decoded = jwt.decode(tokens["id_token"], KeySet.import_key_set(jwks), algorithms=["RS256"])
    assert decoded.header["alg"] == "RS256"
    claims = decoded.claims
    assert claims["fhirUser"] == f"{world.fhir}/Practitioner/pr-a"
    assert claims["aud"] == APP and claims["iss"] == world.fhir
    # An id_token is no access token.
    assert world.fhir_client(tokens["id_token"]).get("/Patient").status_code == 401


def test_fhir_user_only_for_users_with_a_fhir_resource(world: AuthWorld) -> None:
    tokens = world.login("clin-a2", "openid fhirUser user/Patient.rs")
    assert "fhirUser" not in tokens["scope"].split()
    claims = jwt.decode(
        tokens["id_token"],
        KeySet.import_key_set(world.http.get("/plugins/security/jwks").json()),
        algorithms=["RS256"],
    ).claims
    assert "fhirUser" not in claims
    patient = world.login("pat-a1", "openid fhirUser patient/*.rs")
    patient_claims = jwt.decode(
        patient["id_token"],
        KeySet.import_key_set(world.http.get("/plugins/security/jwks").json()),
        algorithms=["RS256"],
    ).claims
    assert patient_claims["fhirUser"] == f"{world.fhir}/Patient/pa1"


def test_a_replayed_code_revokes_what_it_gave(world: AuthWorld) -> None:
    params, verifier = world.params("user/Patient.rs offline_access")
    code = world.redirect_query(world.sign_in("clin-a", params))["code"]
    first = world.exchange(code, verifier)
    assert first.status_code == 200
    tokens = first.json()
    api = world.fhir_client(tokens["access_token"])
    assert api.get("/Patient").status_code == 200
    replay = world.exchange(code, verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert api.get("/Patient").status_code == 401
    refreshed = world.http.post(
        "/plugins/security/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": APP,
        },
    )
    assert refreshed.status_code == 400


# -- 25: EHR launch -------------------------------------------------------------------------------
def test_smart_configuration_declares_the_ehr_launch(world: AuthWorld) -> None:
    config = world.http.get("/fhir/.well-known/smart-configuration").json()
    assert {"launch-ehr", "context-ehr-patient", "launch-standalone"} <= set(config["capabilities"])
    assert "launch" in config["scopes_supported"]


def test_an_ehr_launch_opens_the_app_in_its_patient(world: AuthWorld) -> None:
    ehr = bearer(world.token("clin-a", "user/*.cruds"))
    created = world.http.post("/plugins/security/launch", json={"patient": "pa2"}, headers=ehr)
    assert created.status_code == 201, created.text
    launch = created.json()["launch"]
    assert created.json()["iss"] == world.fhir
    # The app: scope launch, the launch value; no picker, the patient in the token response.
    params, verifier = world.params("launch openid fhirUser patient/*.rs", launch=launch)
    assert world.http.get("/plugins/security/authorize", params=params).status_code == 200
    query = world.redirect_query(world.sign_in("clin-a", params))
    tokens = world.exchange(query["code"], verifier).json()
    assert tokens["patient"] == "pa2" and tokens["need_patient_banner"] is True
    api = world.fhir_client(tokens["access_token"])
    observations = api.get("/Observation").json()["entry"]
    assert {e["resource"]["subject"]["reference"] for e in observations} == {"Patient/pa2"}
    assert api.get("/Patient/pa1").status_code == 404
    # Another tenant's user cannot use org-a's launch.
    other, _ = world.params("launch patient/*.rs", launch=launch)
    refused = world.redirect_query(world.sign_in("clin-b", other))
    assert refused["error"] == "invalid_request"


def test_who_may_create_a_launch_context(world: AuthWorld) -> None:
    # Another tenant's patient is as missing as a free id.
    clin_b = bearer(world.token("clin-b", "user/*.cruds"))
    assert (
        world.http.post("/plugins/security/launch", json={"patient": "pa1"}, headers=clin_b)
    ).status_code == 404
    # A patient app is no EHR.
    patient = bearer(world.token("pat-a1", "patient/*.rs"))
    assert (
        world.http.post("/plugins/security/launch", json={"patient": "pa1"}, headers=patient)
    ).status_code == 403
    # No token, no launch; malformed bodies are 400.
    assert world.http.post("/plugins/security/launch", json={"patient": "pa1"}).status_code == 401
    clin_a = bearer(world.token("clin-a", "user/*.cruds"))
    for body in ({}, {"patient": 7}, []):
        answer = world.http.post("/plugins/security/launch", json=body, headers=clin_a)
        assert answer.status_code == 400, body
    # An unknown launch value, or the launch scope without one, is refused at authorization.
    for extra in ({"launch": "made-up"}, {}):
        params, _ = world.params("launch patient/*.rs", **extra)
        query = world.redirect_query(world.http.get("/plugins/security/authorize", params=params))
        assert query["error"] == "invalid_request"
