"""Roles and scopes as the authorization server grants them (findings 8-12 of the security
review): two tenants, real HTTP, real sign-ins on the authorize form and real tokens."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from fhirhub.plugins.security.state import security
from fhirhub.plugins.security.tables import invitations, outbox
from fhirhub.plugins.security.tokens import issue_access_token
from fhirhub.sdk import (
    SYSTEM,
    Scope,
    acting_as,
    read,
    search,
    tenant_of,
    transaction,
    with_tenant,
)
from tests import backends
from tests.security.auth_world import AuthWorld, auth_world

pytestmark = pytest.mark.xdist_group("auth_roles")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Any) -> Iterator[AuthWorld]:
    data = tmp_path_factory.mktemp("auth-roles")
    with auth_world(data, backends.fresh_sqlite_url(sqlite_template, data / "hub.db")) as w:
        yield w


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def audit_event_ids(world: AuthWorld, tenant: str) -> list[str]:
    """Ids of the tenant's AuditEvents (the writer thread stores them every 200 ms)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with acting_as(SYSTEM):
            found = search(world.hub, "AuditEvent", {"_count": "50"})
        ids = [e["id"] for e in found if tenant_of(e) == tenant]
        if ids:
            return ids
        time.sleep(0.2)
    raise AssertionError(f"no AuditEvent of {tenant} was stored")


# -- 8: AuditEvent and Provenance are append-only ---------------------------------------------
def test_clinicians_get_no_audit_scopes_and_no_provenance_writes(world: AuthWorld) -> None:
    tokens = world.login(
        "clin-a", "user/*.cruds user/AuditEvent.cruds user/Provenance.cruds user/AuditEvent.rs"
    )
    words = tokens["scope"].split()
    assert "user/*.cruds" in words
    assert not [w for w in words if "AuditEvent" in w or "Provenance" in w], words
    api = world.fhir_client(tokens["access_token"])
    # The clinician writes something, which gets a Provenance (system-written).
    created = api.post(
        "/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "pulse"},
            "subject": {"reference": "Patient/pa1"},
        },
    )
    assert created.status_code == 201, created.text
    target = f"Observation/{created.json()['id']}"
    provenances = api.get("/Provenance", params={"target": target}).json()
    assert provenances.get("entry"), provenances
    provenance = provenances["entry"][0]["resource"]
    assert api.get(f"/Provenance/{provenance['id']}").status_code == 200  # readable
    # ... but never changed, deleted or forged.
    edited = {**provenance, "recorded": "2020-01-01T00:00:00Z"}
    assert api.put(f"/Provenance/{provenance['id']}", json=edited).status_code == 403
    assert api.delete(f"/Provenance/{provenance['id']}").status_code == 403
    forged = {k: v for k, v in provenance.items() if k not in ("id", "meta")}
    assert api.post("/Provenance", json=forged).status_code == 403
    # The audit trail is not the clinician's to read, let alone write.
    event_id = audit_event_ids(world, "org-a")[0]
    assert api.get(f"/AuditEvent/{event_id}").status_code == 403
    assert api.get("/AuditEvent").status_code == 403
    assert api.delete(f"/AuditEvent/{event_id}").status_code == 403
    with acting_as(SYSTEM):
        assert read(world.hub, "Provenance", provenance["id"])["recorded"] == provenance["recorded"]
        assert read(world.hub, "AuditEvent", event_id)["id"] == event_id


@pytest.mark.parametrize("user", ["root", "admin-a"])
def test_admins_read_the_audit_trail_but_nobody_edits_it(world: AuthWorld, user: str) -> None:
    scope = "user/*.cruds user/AuditEvent.cruds" if user == "root" else "user/AuditEvent.cruds"
    tokens = world.login(user, scope)
    assert "user/AuditEvent.rs" in tokens["scope"].split() or user == "root"
    assert "AuditEvent.c" not in tokens["scope"] and "AuditEvent.cruds" not in tokens["scope"]
    api = world.fhir_client(tokens["access_token"])
    event_id = audit_event_ids(world, "org-a")[0]
    event = api.get(f"/AuditEvent/{event_id}")
    assert event.status_code == 200, event.text
    assert api.put(f"/AuditEvent/{event_id}", json=event.json()).status_code == 403
    assert api.delete(f"/AuditEvent/{event_id}").status_code == 403
    forged = {k: v for k, v in event.json().items() if k not in ("id", "meta")}
    assert api.post("/AuditEvent", json=forged).status_code == 403
    if user == "admin-a":  # its own tenant's events only
        for entry in api.get("/AuditEvent", params={"_count": "100"}).json().get("entry", []):
            assert tenant_of(entry["resource"]) == "org-a"
        world.fhir_client(world.token("clin-b")).get("/Patient")  # org-b's own events
        for other in audit_event_ids(world, "org-b")[:3]:
            assert api.get(f"/AuditEvent/{other}").status_code == 404


# -- 9: patient-level scopes need a patient context -------------------------------------------
def test_patient_scopes_without_launch_patient_force_the_picker(world: AuthWorld) -> None:
    params, verifier = world.params("patient/*.rs")  # no launch/patient
    answer = world.sign_in("clin-a", params)
    assert answer.status_code == 200 and 'name="ticket"' in answer.text  # the picker
    query = world.redirect_query(world.pick(answer, "pa2"))
    tokens = world.exchange(query["code"], verifier).json()
    assert tokens["patient"] == "pa2"
    api = world.fhir_client(tokens["access_token"])
    subjects = {
        e["resource"]["subject"]["reference"] for e in api.get("/Observation").json()["entry"]
    }
    assert subjects == {"Patient/pa2"}


def test_a_token_with_patient_scopes_and_no_patient_reads_nothing(world: AuthWorld) -> None:
    """What an external issuer might send: ``patient/`` scopes with no ``patient`` claim."""
    sec = security(world.hub)
    token, _ = issue_access_token(
        sec,
        audience=world.fhir,
        subject="someone",
        scope="patient/*.rs",
        client_id="app",
        tenant="org-a",
    )
    api = world.fhir_client(token)
    assert api.get("/Observation").status_code == 403
    assert api.get("/Patient/pa1").status_code == 403


# -- 10: granular scopes are refused, never widened -------------------------------------------
def test_granular_scopes_are_refused_at_authorization(world: AuthWorld) -> None:
    params, _ = world.params(
        "launch/patient patient/Observation.rs?category=http://terminology.hl7.org/"
        "CodeSystem/observation-category|laboratory"
    )
    answer = world.http.get("/plugins/security/authorize", params=params)
    query = world.redirect_query(answer)
    assert query["error"] == "invalid_scope"
    assert query["state"] == params["state"]
    assert world.redirect_query(world.sign_in("pat-a1", params))["error"] == "invalid_scope"


def test_a_granular_scope_in_a_token_grants_nothing(world: AuthWorld) -> None:
    assert Scope.parse("patient/Observation.rs?category=laboratory") is None
    token, _ = issue_access_token(
        security(world.hub),
        audience=world.fhir,
        subject="someone",
        scope="patient/Observation.rs?category=laboratory",
        client_id="app",
        tenant="org-a",
        patient="pa1",
    )
    assert world.fhir_client(token).get("/Observation").status_code == 403


# -- 11: app_admin creates organizations and org admins only; ids are never overwritten ------
def test_app_admin_creates_org_admins_only(world: AuthWorld) -> None:
    headers = bearer(world.token("appadmin", "user/Organization.cruds"))
    for role in ("clinician", "patient", "app_admin", "super_admin"):
        answer = world.http.post(
            "/plugins/security/admin/users",
            json={
                "username": f"sneaky-{role}",
                "email": "appadmin@example.org",
                "role": role,
                "tenant": "org-b",
                "patient": "pb1",
            },
            headers=headers,
        )
        assert answer.status_code == 403, (role, answer.text)
    ok = world.http.post(
        "/plugins/security/admin/users",
        json={
            "username": "boss-b",
            "email": "boss@b.example",
            "role": "org_admin",
            "tenant": "org-b",
        },
        headers=headers,
    )
    assert ok.status_code == 201, ok.text


@pytest.mark.parametrize("user", ["appadmin", "root"])
def test_existing_organizations_are_never_overwritten(world: AuthWorld, user: str) -> None:
    headers = bearer(world.token(user, "user/Organization.cruds"))
    # A plain Organization of org-a (not a tenant itself).
    lab: dict[str, Any] = {"resourceType": "Organization", "id": "lab-a", "name": "Lab"}
    with acting_as(SYSTEM), transaction(world.hub) as tx:
        if tx.current("Organization", "lab-a") is None:
            with_tenant(lab, "org-a")
            tx.update(lab)
    for existing in ("org-b", "lab-a"):
        with acting_as(SYSTEM):
            before = read(world.hub, "Organization", existing)
        answer = world.http.post(
            "/plugins/security/admin/tenants",
            json={"id": existing, "name": "Taken over"},
            headers=headers,
        )
        assert answer.status_code == 409, answer.text
        with acting_as(SYSTEM):
            after = read(world.hub, "Organization", existing)
        assert after == before
    created = world.http.post(
        "/plugins/security/admin/tenants",
        json={"id": f"org-new-{user}", "name": "New"},
        headers=headers,
    )
    assert created.status_code == 201, created.text


# -- 12: refresh only narrows --------------------------------------------------------------------
def test_refresh_never_widens_the_grant(world: AuthWorld) -> None:
    first = world.login("clin-a", "user/Patient.rs user/Observation.rs online_access")
    assert "offline_access" not in first["scope"]
    wider = world.http.post(
        "/plugins/security/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": "app",
            "scope": "user/*.cruds offline_access openid fhirUser online_access",
        },
    )
    assert wider.status_code == 200, wider.text
    words = set(wider.json()["scope"].split())
    assert words <= {"user/Patient.rs", "user/Observation.rs", "online_access"}, words
    assert "offline_access" not in words
    narrower = world.http.post(
        "/plugins/security/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": wider.json()["refresh_token"],
            "client_id": "app",
            "scope": "user/Patient.r online_access",
        },
    )
    assert narrower.json()["scope"] == "user/Patient.r online_access"


def test_a_users_fhir_user_must_exist_in_its_tenant(world: AuthWorld) -> None:
    headers = bearer(world.token("admin-a", "user/Practitioner.rs"))

    def invite(name: str, fhir_user: str) -> int:
        return world.http.post(
            "/plugins/security/admin/users",
            json={
                "username": name,
                "email": f"{name}@a.example",
                "role": "clinician",
                "fhirUser": fhir_user,
            },
            headers=headers,
        ).status_code

    assert invite("ghost", "Practitioner/nobody") == 400
    assert invite("thief", "Patient/pb1") == 400  # org-b's
    assert invite("odd", "Observation/obs-a2") == 400
    assert invite("doc2", "Practitioner/pr-a") == 201


# -- 14: invitation tokens are stored only as a hash ---------------------------------------------
def test_invitation_tokens_are_never_stored_in_clear(world: AuthWorld) -> None:
    headers = bearer(world.token("admin-a", "user/Practitioner.rs"))
    answer = world.http.post(
        "/plugins/security/admin/users",
        json={"username": "new.nurse", "email": "nurse@a.example", "role": "clinician"},
        headers=headers,
    )
    assert answer.status_code == 201, answer.text
    link = answer.json()["invitation_link"]  # no SMTP here: handed to the admin, once
    path, _, token = link.partition("#")
    assert path == f"{world.base}/plugins/security/invite" and len(token) >= 40
    sec = security(world.hub)
    with sec.engine.connect() as conn:
        mails = [r.body for r in conn.execute(select(outbox)) if r.recipient == "nurse@a.example"]
        hashes = [r.token_hash for r in conn.execute(select(invitations))]
    assert mails and all(token not in body for body in mails)
    assert token not in hashes and all(token not in h for h in hashes)
    # The page takes the token from the fragment; the form posts it in the body.
    assert world.http.get("/plugins/security/invite").status_code == 200
    new_password = "a long new password"
    done = world.http.post(
        "/plugins/security/invite",
        data={"token": token, "password": new_password, "repeat": new_password},
    )
    assert done.status_code == 200 and "You can now sign in as new.nurse" in done.text
    again = world.http.post(
        "/plugins/security/invite",
        data={"token": token, "password": new_password, "repeat": new_password},
    )
    assert again.status_code == 404  # one-time
