"""Trusting an external OpenID Connect issuer: its tokens verify against its JWKS, fetched by
URL from a small HTTP server on loopback (the issuer's key is made in the test); tokens of an
unknown issuer, or of the right issuer signed by another key, are refused."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from fhirhub.core.hub import build_hub
from fhirhub.core.settings import Settings
from fhirhub.plugins.security.tenants import create_tenant
from tests.plugins.security.conftest import BASE, FHIR, bearer, clear_security_tables

ISSUER = "https://idp.hospital.test"


@pytest.fixture
def issuer_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "idp-1"})


@pytest.fixture
def jwks_url(issuer_key: RSAKey) -> Iterator[str]:
    document = json.dumps(KeySet([issuer_key]).as_dict(private=False)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/jwks"
    server.shutdown()


@pytest.fixture
def client(sqlite_url: str, tmp_path: Path, jwks_url: str) -> Iterator[TestClient]:
    from fhirhub.core.http.app import create_app

    settings = Settings(  # type: ignore[call-arg]
        db=sqlite_url,
        data_dir=tmp_path,
        auth="on",
        base_url=FHIR,
        plugin_config={"security": {"oidc_issuer": ISSUER, "oidc_jwks_url": jwks_url}},
    )
    hub = build_hub(settings)
    clear_security_tables(hub)
    create_tenant(hub, "hospital-a", "Hospital A")
    with TestClient(create_app(hub=hub), base_url=BASE) as test_client:
        yield test_client


def external_token(key: RSAKey, **overrides: Any) -> str:
    moment = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": FHIR,
        "sub": "u-42",
        "preferred_username": "jdoe@hospital.test",
        "iat": moment,
        "exp": moment + 300,
        "scope": "user/*.cruds",
        "roles": ["clinician"],
        "tenant": "hospital-a",
        **overrides,
    }
    return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key, algorithms=["RS256"])


def test_a_token_of_the_trusted_issuer_is_accepted(client: TestClient, issuer_key: RSAKey) -> None:
    token = external_token(issuer_key)
    response = client.get("/fhir/Patient", headers=bearer(token))
    assert response.status_code == 200, response.text
    # The caller it maps to: a clinician of hospital-a, scopes limited by the role.
    me = client.get(
        "/plugins/security/admin/me",
        headers=bearer(external_token(issuer_key, roles=["org_admin"])),
    )
    assert me.status_code == 200
    assert me.json()["tenant"] == "hospital-a" and me.json()["subject"] == "user:jdoe@hospital.test"


def test_unknown_issuer_wrong_key_and_missing_tenant_are_refused(
    client: TestClient, issuer_key: RSAKey
) -> None:
    assert (
        client.get(
            "/fhir/Patient", headers=bearer(external_token(issuer_key, iss="https://other.test"))
        ).status_code
        == 401
    )
    impostor = RSAKey.generate_key(2048, parameters={"kid": "idp-1"})
    assert client.get("/fhir/Patient", headers=bearer(external_token(impostor))).status_code == 401
    no_tenant = external_token(issuer_key, tenant=None)
    response = client.get("/fhir/Patient", headers=bearer(no_tenant))
    assert response.status_code == 401 and "tenant" in response.json()["issue"][0]["diagnostics"]
    expired = external_token(issuer_key, exp=int(time.time()) - 600)
    assert client.get("/fhir/Patient", headers=bearer(expired)).status_code == 401
    wrong_aud = external_token(issuer_key, aud="https://other-hub.test/fhir")
    assert client.get("/fhir/Patient", headers=bearer(wrong_aud)).status_code == 401
