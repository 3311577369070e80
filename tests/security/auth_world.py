"""Two tenants behind one hub with authentication on, served over real HTTP (uvicorn on a free
port, no ``FHIRHUB_BASE_URL``), reached only through the security plugin's real endpoints:
users sign in on the authorize form, apps exchange codes at the token endpoint, and every FHIR
request carries the bearer token it got.

Tenants org-a and org-b (Organizations labelled as their own tenants). org-a: Patients pa1 and
pa2, pa1 with a laboratory and a vital-signs Observation, pa2 with one; Practitioner pr-a.
org-b: Patient pb1 with one Observation. Users (password :data:`PASSWORD`): ``clin-a``
(clinician of org-a, fhirUser Practitioner/pr-a), ``clin-a2`` (clinician of org-a without a
FHIR resource), ``clin-b`` (clinician of org-b), ``admin-a`` (org_admin of org-a),
``appadmin`` (app_admin), ``root`` (super_admin), ``pat-a1`` (patient pa1). A public app
``app`` (redirect :data:`REDIRECT`).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from fhirhub.core.hub import Hub, build_hub
from fhirhub.plugins.security.clients import register_client
from fhirhub.plugins.security.state import security
from fhirhub.plugins.security.tenants import create_tenant
from fhirhub.plugins.security.users import create_user
from fhirhub.sdk import SYSTEM, acting_as, transaction, with_tenant
from tests.conftest import make_settings
from tests.security.rest_world import served

PASSWORD = "correct horse battery"
REDIRECT = "http://app.example/callback"
APP = "app"

USERS: dict[str, dict[str, Any]] = {
    "clin-a": {"role": "clinician", "tenant": "org-a", "fhir_user": "Practitioner/pr-a"},
    "clin-a2": {"role": "clinician", "tenant": "org-a"},
    "clin-b": {"role": "clinician", "tenant": "org-b"},
    "admin-a": {"role": "org_admin", "tenant": "org-a"},
    "appadmin": {"role": "app_admin"},
    "root": {"role": "super_admin"},
    "pat-a1": {"role": "patient", "tenant": "org-a", "patient": "pa1"},
}


def observation(oid: str, subject: str, category: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": category,
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{subject}"},
        "effectiveDateTime": "2024-03-01T10:00:00Z",
        "valueQuantity": {"value": 60, "unit": "/min"},
    }


def seed(hub: Hub) -> None:
    for tenant in ("org-a", "org-b"):
        create_tenant(hub, tenant, f"Hospital {tenant[-1].upper()}")
    rows = [
        ("org-a", {"resourceType": "Patient", "id": "pa1", "name": [{"family": "Alpha"}]}),
        ("org-a", {"resourceType": "Patient", "id": "pa2", "name": [{"family": "Beta"}]}),
        ("org-a", {"resourceType": "Practitioner", "id": "pr-a", "name": [{"family": "Doc"}]}),
        ("org-a", observation("obs-a1-lab", "pa1", "laboratory")),
        ("org-a", observation("obs-a1-vital", "pa1", "vital-signs")),
        ("org-a", observation("obs-a2", "pa2", "laboratory")),
        ("org-b", {"resourceType": "Patient", "id": "pb1", "name": [{"family": "Gamma"}]}),
        ("org-b", observation("obs-b1", "pb1", "laboratory")),
    ]
    with acting_as(SYSTEM), transaction(hub) as tx:
        for tenant, resource in rows:
            with_tenant(resource, tenant)
            tx.update(resource)
    sec = security(hub)
    for name, spec in USERS.items():
        create_user(sec, name, password=PASSWORD, email=f"{name}@example.org", **spec)
    register_client(
        sec,
        APP,
        name="Chart app",
        public=True,
        redirect_uris=[REDIRECT],
        scopes="user/*.cruds patient/*.cruds",
    )


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class AuthWorld:
    """The served hub and an OAuth client walking its endpoints over HTTP."""

    def __init__(self, hub: Hub, base: str) -> None:
        self.hub = hub
        self.base = base
        self.fhir = f"{base}/fhir"
        self.http = httpx.Client(base_url=base, timeout=60, follow_redirects=False)

    # -- the authorization code flow ---------------------------------------------------------
    def params(self, scope: str, **extra: str) -> tuple[dict[str, str], str]:
        verifier, challenge = pkce_pair()
        params = {
            "response_type": "code",
            "client_id": APP,
            "redirect_uri": REDIRECT,
            "scope": scope,
            "state": "st-" + secrets.token_hex(4),
            "aud": self.fhir,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            **extra,
        }
        return params, verifier

    def sign_in(self, user: str, params: dict[str, str]) -> httpx.Response:
        """POST the authorize form with the user's credentials (the answer, not followed)."""
        return self.http.post(
            "/plugins/security/authorize",
            data={**params, "username": user, "password": PASSWORD, "decision": "approve"},
        )

    def pick(self, picker_page: httpx.Response, patient: str) -> httpx.Response:
        match = re.search(r'name="ticket" value="([^"]+)"', picker_page.text)
        assert match is not None, picker_page.text
        return self.http.post(
            "/plugins/security/authorize/patient",
            data={"ticket": match.group(1), "patient": patient},
        )

    @staticmethod
    def redirect_query(response: httpx.Response) -> dict[str, str]:
        assert response.status_code == 302, response.text
        location = response.headers["location"]
        assert location.startswith(REDIRECT), location
        return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}

    def exchange(self, code: str, verifier: str) -> httpx.Response:
        return self.http.post(
            "/plugins/security/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "client_id": APP,
                "code_verifier": verifier,
            },
        )

    def login(
        self, user: str, scope: str, patient: str | None = None, **extra: str
    ) -> dict[str, Any]:
        """The whole flow (with the patient picker when it appears); the token response."""
        params, verifier = self.params(scope, **extra)
        answer = self.sign_in(user, params)
        if answer.status_code == 200 and patient is not None:
            answer = self.pick(answer, patient)
        query = self.redirect_query(answer)
        assert query["state"] == params["state"]
        response = self.exchange(query["code"], verifier)
        assert response.status_code == 200, response.text
        tokens: dict[str, Any] = response.json()
        return tokens

    def token(self, user: str, scope: str = "user/*.cruds", **kw: Any) -> str:
        return str(self.login(user, scope, **kw)["access_token"])

    # -- FHIR with a token -------------------------------------------------------------------
    def fhir_client(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.fhir,
            timeout=60,
            headers={"Authorization": f"Bearer {token}"},
        )

    def close(self) -> None:
        self.http.close()


@contextmanager
def auth_world(data_dir: Path, database_url: str, **settings: Any) -> Iterator[AuthWorld]:
    hub = build_hub(make_settings(database_url, data_dir, auth="on", listeners=False, **settings))
    seed(hub)
    try:
        with served(hub) as base:
            world = AuthWorld(hub, base)
            try:
                yield world
            finally:
                world.close()
    finally:
        hub.close()
