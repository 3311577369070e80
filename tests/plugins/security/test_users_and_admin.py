"""Logins throttled against brute force, invitations by email, and the admin API's role
rules (app_admin everywhere, org_admin only in its own organization)."""

from __future__ import annotations

import re
from typing import Any

from fhirhub.plugins.security.mail import read_outbox
from fhirhub.plugins.security.state import Security
from fhirhub.plugins.security.tenants import create_tenant
from fhirhub.plugins.security.users import create_user, find_user
from tests.plugins.security.conftest import (
    PASSWORD,
    authorize_params,
    bearer,
    login,
    pkce_pair,
)


def attempt(client: Any, username: str, password: str) -> Any:
    _verifier, challenge = pkce_pair()
    params = authorize_params(challenge, "user/*.rs")
    return client.post(
        "/plugins/security/authorize",
        data={**params, "username": username, "password": password, "decision": "approve"},
        follow_redirects=False,
    )


def test_brute_force_is_throttled(
    secure_client: Any, app_client: str, clinician: str, secure_hub: Any
) -> None:
    records: list[dict[str, Any]] = []

    class Recorder:
        from fhirhub.sdk import hookimpl

        @hookimpl
        def request_completed(self, record: dict[str, Any], hub: Any) -> None:
            records.append(record)

    secure_hub.plugins.register(Recorder())
    for _ in range(5):
        assert attempt(secure_client, clinician, "wrong password!").status_code == 401
    # Locked now: even the right password waits.
    locked = attempt(secure_client, clinician, PASSWORD)
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.text
    failed = [r for r in records if r["interaction"] == "login-failed"]
    assert len(failed) == 6 and failed[-1]["status"] == 429
    assert failed[0]["username"] == clinician


def test_a_good_login_is_recorded(
    secure_client: Any, app_client: str, clinician: str, secure_hub: Any
) -> None:
    records: list[dict[str, Any]] = []

    class Recorder:
        from fhirhub.sdk import hookimpl

        @hookimpl
        def request_completed(self, record: dict[str, Any], hub: Any) -> None:
            records.append(record)

    secure_hub.plugins.register(Recorder())
    login(secure_client, clinician)
    logins = [r for r in records if r["interaction"] == "login"]
    assert len(logins) == 1 and logins[0]["access"].subject == f"user:{clinician}"


def admin_token(client: Any, sec: Security, username: str, role: str, tenant: str | None) -> str:
    create_user(sec, username, role=role, tenant=tenant, password=PASSWORD)
    return str(login(client, username, scope="user/*.cruds")["access_token"])


def test_invitation_email_link_sets_the_password(
    secure_client: Any, sec: Security, app_client: str, tenant_a: str
) -> None:
    token = admin_token(secure_client, sec, "boss", "org_admin", tenant_a)
    response = secure_client.post(
        "/plugins/security/admin/users",
        json={"username": "nurse.joy", "email": "joy@a.example", "role": "clinician"},
        headers=bearer(token),
    )
    assert response.status_code == 201, response.text
    assert response.json()["tenant"] == tenant_a
    mail = read_outbox(sec, "joy@a.example")
    assert len(mail) == 1
    # No SMTP here: the admin gets the link to hand over; the outbox keeps no token.
    link = re.fullmatch(
        r"http://testserver(/plugins/security/invite)#(\S+)", response.json()["invitation_link"]
    )
    assert link is not None
    path, token = link.groups()
    assert token not in mail[0]["body"] and "/plugins/security/invite#" in mail[0]["body"]
    assert secure_client.get(path).status_code == 200
    short = secure_client.post(path, data={"token": token, "password": "short", "repeat": "short"})
    assert short.status_code == 400
    new_password = "a long new password"
    done = secure_client.post(
        path, data={"token": token, "password": new_password, "repeat": new_password}
    )
    assert done.status_code == 200 and "You can now sign in" in done.text
    again = secure_client.post(
        path, data={"token": token, "password": new_password, "repeat": new_password}
    )
    assert again.status_code == 404  # one-time
    tokens = login(secure_client, "nurse.joy", password=new_password)
    assert tokens["tenant"] == tenant_a


def test_admin_role_rules(
    secure_client: Any, secure_hub: Any, sec: Security, app_client: str, tenant_a: str
) -> None:
    create_tenant(secure_hub, "clinic-b", "Clinic B")
    create_user(sec, "b.doc", role="clinician", tenant="clinic-b", password=PASSWORD)
    app_admin = admin_token(secure_client, sec, "appadmin", "app_admin", None)
    org_admin = admin_token(secure_client, sec, "orgadmin", "org_admin", tenant_a)
    clinician = admin_token(secure_client, sec, "doc", "clinician", tenant_a)

    def users(token: str) -> Any:
        return secure_client.get("/plugins/security/admin/users", headers=bearer(token))

    everyone = {u["username"] for u in users(app_admin).json()}
    assert {"b.doc", "orgadmin", "doc", "appadmin"} <= everyone
    own = {u["username"] for u in users(org_admin).json()}
    assert "b.doc" not in own and {"orgadmin", "doc"} <= own
    assert users(clinician).status_code == 403

    def invite(token: str, **body: str) -> Any:
        return secure_client.post("/plugins/security/admin/users", json=body, headers=bearer(token))

    # org_admin: not in another organization, not a global role.
    assert (
        invite(
            org_admin, username="x1", email="x1@e", role="clinician", tenant="clinic-b"
        ).status_code
        == 403
    )
    assert invite(org_admin, username="x2", email="x2@e", role="app_admin").status_code == 403
    # app_admin: organizations and their org_admins anywhere, no other role.
    created = secure_client.post(
        "/plugins/security/admin/tenants",
        json={"id": "clinic-c", "name": "Clinic C"},
        headers=bearer(app_admin),
    )
    assert created.status_code == 201
    assert (
        invite(
            app_admin, username="c.admin", email="c@e", role="org_admin", tenant="clinic-c"
        ).status_code
        == 201
    )
    assert invite(app_admin, username="root2", email="r@e", role="super_admin").status_code == 403
    for role in ("clinician", "patient", "app_admin"):
        answer = invite(
            app_admin, username=f"y-{role}", email="y@e", role=role, tenant="clinic-c", patient="p"
        )
        assert answer.status_code == 403, role
    assert (
        secure_client.post(
            "/plugins/security/admin/tenants",
            json={"id": "z", "name": "Z"},
            headers=bearer(org_admin),
        ).status_code
        == 403
    )
    tenants = secure_client.get("/plugins/security/admin/tenants", headers=bearer(org_admin)).json()
    assert [t["id"] for t in tenants] == [tenant_a]
    # Disabling: org_admin only its own users.
    assert (
        secure_client.post(
            "/plugins/security/admin/users/b.doc/disable", headers=bearer(org_admin)
        ).status_code
        == 404
    )
    assert (
        secure_client.post(
            "/plugins/security/admin/users/doc/disable", headers=bearer(org_admin)
        ).status_code
        == 200
    )
    user = find_user(sec, "doc")
    assert user is not None and user.disabled


def test_a_patient_user_gets_patient_scopes_on_their_own_record(
    secure_client: Any, sec: Security, app_client: str, tenant_a: str
) -> None:
    create_user(sec, "pat", role="patient", tenant=tenant_a, patient="p-123", password=PASSWORD)
    tokens = login(secure_client, "pat", scope="launch/patient user/*.cruds openid fhirUser")
    assert tokens["patient"] == "p-123"
    assert "patient/*.rs" in tokens["scope"].split()
    assert not any(s.startswith("user/") for s in tokens["scope"].split())
    claims = secure_client.post(
        "/plugins/security/introspect",
        data={"token": tokens["access_token"]},
        headers=bearer(tokens["access_token"]),
    ).json()
    assert claims["patient"] == "p-123" and claims["fhirUser"] == "Patient/p-123"


def test_a_clinician_picks_the_launch_patient(
    secure_client: Any,
    secure_hub: Any,
    sec: Security,
    app_client: str,
    clinician: str,
    tenant_a: str,
) -> None:
    from urllib.parse import parse_qs, urlsplit

    from fhirhub.core.access import SYSTEM, acting_as
    from fhirhub.fhir_store.tenancy import with_tenant
    from fhirhub.sdk import update

    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": "pick-me",
        "name": [{"family": "Picked"}],
    }
    with_tenant(patient, tenant_a)
    with acting_as(SYSTEM):
        update(secure_hub, patient)
    verifier, challenge = pkce_pair()
    params = authorize_params(challenge, "launch/patient patient/*.rs")
    picker = secure_client.post(
        "/plugins/security/authorize",
        data={**params, "username": clinician, "password": PASSWORD, "decision": "approve"},
        follow_redirects=False,
    )
    assert picker.status_code == 200 and "Choose a patient" in picker.text
    assert "Picked" in picker.text
    ticket = re.search(r'name="ticket" value="([^"]+)"', picker.text)
    assert ticket is not None
    chosen = secure_client.post(
        "/plugins/security/authorize/patient",
        data={"ticket": ticket.group(1), "patient": "pick-me"},
        follow_redirects=False,
    )
    assert chosen.status_code == 302
    code = parse_qs(urlsplit(chosen.headers["location"]).query)["code"][0]
    tokens = secure_client.post(
        "/plugins/security/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": params["redirect_uri"],
            "client_id": "chart-app",
            "code_verifier": verifier,
        },
    ).json()
    assert tokens["patient"] == "pick-me" and tokens["need_patient_banner"] is True


def test_authorize_checks_aud_and_pkce(secure_client: Any, app_client: str) -> None:
    _verifier, challenge = pkce_pair()
    wrong_aud = authorize_params(challenge, "user/*.rs", aud="https://elsewhere.example/fhir")
    response = secure_client.get(
        "/plugins/security/authorize", params=wrong_aud, follow_redirects=False
    )
    assert response.status_code == 302 and "error=invalid_request" in response.headers["location"]
    plain = authorize_params(challenge, "user/*.rs", code_challenge_method="plain")
    response = secure_client.get(
        "/plugins/security/authorize", params=plain, follow_redirects=False
    )
    assert response.status_code == 302 and "PKCE" in response.headers["location"].replace("+", " ")
    foreign = authorize_params(challenge, "user/*.rs", redirect_uri="https://evil.example/cb")
    response = secure_client.get(
        "/plugins/security/authorize", params=foreign, follow_redirects=False
    )
    assert response.status_code == 400  # shown, never redirected to an unregistered URI
