"""Hubs with authentication on (the rest of the suite runs with it off), on SQLite and
PostgreSQL, and helpers that walk the OAuth flows over HTTP as a client application would."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete

from fhirhub.core.hub import Hub, build_hub
from fhirhub.core.settings import Settings
from fhirhub.plugins.security.clients import register_client
from fhirhub.plugins.security.state import Security, security
from fhirhub.plugins.security.tables import metadata
from fhirhub.plugins.security.tenants import create_tenant
from fhirhub.plugins.security.users import create_user

BASE = "http://testserver"
FHIR = f"{BASE}/fhir"
APP_REDIRECT = "http://app.example/callback"
PASSWORD = "correct horse battery"


def clear_security_tables(hub: Hub) -> None:
    """PostgreSQL databases are shared by a worker's tests; the core's truncation does not
    know this plugin's tables."""
    sec = security(hub)
    with sec.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(delete(table))


@pytest.fixture
def secure_hub(database_url: str, tmp_path: Path) -> Iterator[Hub]:
    # The TestClient's host ("testserver") is this hub's configured public address.
    hub = build_hub(Settings(db=database_url, data_dir=tmp_path, auth="on", base_url=FHIR))  # type: ignore[call-arg]
    clear_security_tables(hub)
    yield hub
    hub.store.engine.dispose()


@pytest.fixture
def sec(secure_hub: Hub) -> Security:
    return security(secure_hub)


@pytest.fixture
def secure_client(secure_hub: Hub) -> Iterator[TestClient]:
    from fhirhub.core.http.app import create_app

    with TestClient(create_app(hub=secure_hub), base_url=BASE) as client:
        yield client


@pytest.fixture
def tenant_a(secure_hub: Hub) -> str:
    create_tenant(secure_hub, "hospital-a", "Hospital A")
    return "hospital-a"


@pytest.fixture
def app_client(sec: Security) -> str:
    register_client(
        sec,
        "chart-app",
        name="Chart app",
        public=True,
        redirect_uris=[APP_REDIRECT],
        scopes="user/*.cruds patient/*.rs",
    )
    return "chart-app"


@pytest.fixture
def clinician(sec: Security, tenant_a: str) -> str:
    create_user(
        sec,
        "dr.house",
        role="clinician",
        tenant=tenant_a,
        password=PASSWORD,
        email="house@a.example",
    )
    return "dr.house"


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    return verifier, challenge


def authorize_params(
    challenge: str, scope: str, client_id: str = "chart-app", **extra: str
) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": APP_REDIRECT,
        "scope": scope,
        "state": "st-" + secrets.token_hex(4),
        "aud": FHIR,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }


def get_code(client: Any, username: str, password: str, params: dict[str, str]) -> str:
    """Sign in on the authorize form; the code from the redirect (the state checked)."""
    page = client.get("/plugins/security/authorize", params=params)
    assert page.status_code == 200, page.text
    response = client.post(
        "/plugins/security/authorize",
        data={**params, "username": username, "password": password, "decision": "approve"},
        follow_redirects=False,
    )
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(APP_REDIRECT)
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [params["state"]]
    return query["code"][0]


def login(
    client: Any, username: str, password: str = PASSWORD, scope: str = "user/*.cruds offline_access"
) -> dict[str, Any]:
    """The whole authorization code + PKCE flow; the token response."""
    verifier, challenge = pkce_pair()
    params = authorize_params(challenge, scope)
    code = get_code(client, username, password, params)
    response = client.post(
        "/plugins/security/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": APP_REDIRECT,
            "client_id": params["client_id"],
            "code_verifier": verifier,
        },
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
