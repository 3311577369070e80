"""SMART Backend Services: client_credentials with a signed client assertion (RS384 and
ES384), over real HTTP against ``fhirhub serve`` in a subprocess."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from fhirhub.core.hub import build_hub
from fhirhub.core.settings import Settings
from fhirhub.plugins.security.clients import ASSERTION_TYPE, register_client
from fhirhub.plugins.security.state import security
from tests.conftest import LiveServer
from tests.plugins.security.conftest import clear_security_tables

pytestmark = pytest.mark.slow


@pytest.fixture
def keys() -> dict[str, Any]:
    return {
        "rsa": RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}),
        "ec": ECKey.generate_key("P-384", parameters={"kid": "ec-1"}),
    }


@pytest.fixture
def server(database_url: str, tmp_path: Path, keys: dict[str, Any]) -> Iterator[LiveServer]:
    hub = build_hub(Settings(db=database_url, data_dir=tmp_path, auth="on"))  # type: ignore[call-arg]
    clear_security_tables(hub)
    public = KeySet([keys["rsa"], keys["ec"]]).as_dict(private=False)
    register_client(
        security(hub),
        "lab-feed",
        jwks=public,
        scopes="system/*.rs system/Observation.cruds",
        tenant="hospital-a",
    )
    hub.store.engine.dispose()
    live = LiveServer(database_url, tmp_path, env={"FHIRHUB_AUTH": "on"}).start()
    yield live
    live.stop()


def assertion(server: LiveServer, key: Any, alg: str, **overrides: Any) -> str:
    moment = int(time.time())
    claims = {
        "iss": "lab-feed",
        "sub": "lab-feed",
        "aud": f"{server.base}/plugins/security/token",
        "exp": moment + 240,
        "jti": uuid.uuid4().hex,
        **overrides,
    }
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, claims, key, algorithms=[alg])


def token_request(
    server: LiveServer, client_assertion: str, scope: str = "system/*.rs"
) -> httpx.Response:
    return httpx.post(
        f"{server.base}/plugins/security/token",
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion,
        },
    )


def test_client_credentials_with_rs384_and_es384(server: LiveServer, keys: dict[str, Any]) -> None:
    for key, alg in ((keys["rsa"], "RS384"), (keys["ec"], "ES384")):
        response = token_request(
            server, assertion(server, key, alg), "system/*.rs system/Patient.c user/*.cruds"
        )
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["scope"] == "system/*.rs"  # only what was registered, only system/
        search = httpx.get(
            f"{server.fhir}/Patient", headers={"Authorization": f"Bearer {answer['access_token']}"}
        )
        assert search.status_code == 200, search.text


def test_a_replayed_assertion_is_refused(server: LiveServer, keys: dict[str, Any]) -> None:
    signed = assertion(server, keys["ec"], "ES384")
    assert token_request(server, signed).status_code == 200
    replay = token_request(server, signed)
    assert replay.status_code == 401
    assert "already used" in replay.json()["error_description"]


def test_an_assertion_signed_with_another_key_is_refused(server: LiveServer) -> None:
    stranger = ECKey.generate_key("P-384", parameters={"kid": "ec-1"})
    response = token_request(server, assertion(server, stranger, "ES384"))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_long_lived_and_misaddressed_assertions_are_refused(
    server: LiveServer, keys: dict[str, Any]
) -> None:
    too_long = assertion(server, keys["ec"], "ES384", exp=int(time.time()) + 3600)
    assert token_request(server, too_long).status_code == 401
    wrong_aud = assertion(server, keys["ec"], "ES384", aud="https://elsewhere.example/token")
    assert token_request(server, wrong_aud).status_code == 401
    expired = assertion(server, keys["ec"], "ES384", exp=int(time.time()) - 120)
    assert token_request(server, expired).status_code == 401
    rs256 = assertion(server, keys["rsa"], "RS256")
    assert token_request(server, rs256).status_code == 401
