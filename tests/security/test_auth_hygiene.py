"""Hygiene findings of the security review around sign-in: failed sign-ins must not stall the
server, no open redirect after sign-in, a forged Host header does not choose the issuer, and
plugin pages do not show counts across tenants. Two tenants, real HTTP."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import backends
from tests.security.auth_world import AuthWorld, auth_world

pytestmark = pytest.mark.xdist_group("auth_hygiene")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Any) -> Iterator[AuthWorld]:
    data = tmp_path_factory.mktemp("auth-hygiene")
    url = backends.fresh_sqlite_url(sqlite_template, data / "hub.db")
    with auth_world(data, url, plugins="+hello") as w:  # the example plugin is opt-in
        yield w


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- open redirect after sign-in ---------------------------------------------------------------
@pytest.mark.parametrize(
    "target",
    [
        "/\\evil.example",
        "/\t/evil.example",
        "/%09/evil.example",
        "//evil.example",
        "https://evil.example/",
        "http:evil.example",
        "/\n/evil.example",
        " /evil",
    ],
)
def test_sign_in_never_redirects_off_the_hub(world: AuthWorld, target: str) -> None:
    page = world.http.get("/plugins/security/ui/login", params={"next": target})
    assert page.status_code == 200
    assert 'data-next="/"' in page.text, re.findall(r'data-next="[^"]*"', page.text)


def test_sign_in_keeps_a_path_on_the_hub(world: AuthWorld) -> None:
    page = world.http.get("/plugins/security/ui/login", params={"next": "/ui/patients?count=5"})
    assert 'data-next="/ui/patients?count=5"' in page.text


# -- the Host header does not choose the issuer ------------------------------------------------
def test_an_unknown_host_header_is_refused(world: AuthWorld) -> None:
    evil = {"Host": "evil.example"}
    config = world.http.get("/fhir/.well-known/smart-configuration", headers=evil)
    assert config.status_code == 400
    assert "FHIRHUB_BASE_URL" in config.text
    params, _ = world.params("user/Patient.rs")
    assert (
        world.http.get("/plugins/security/authorize", params=params, headers=evil).status_code
        == 400
    )
    token = world.token("clin-a", "user/*.cruds")
    assert world.http.get("/fhir/Patient", headers={**evil, **bearer(token)}).status_code == 400
    invite = world.http.post(
        "/plugins/security/admin/users",
        json={"username": "x.evil", "email": "x@evil.example", "role": "clinician"},
        headers={**evil, **bearer(world.token("admin-a", "user/Practitioner.rs"))},
    )
    assert invite.status_code == 400  # no invitation link pointing at the forged host
    # The hub's own address works.
    good = world.http.get("/fhir/.well-known/smart-configuration").json()
    assert good["issuer"] == world.fhir


# -- plugin pages show no counts across tenants -------------------------------------------------
def hello_counts(world: AuthWorld, token: str) -> dict[str, int]:
    page = world.http.get("/plugins/hello/", headers=bearer(token))
    assert page.status_code == 200, page.text
    return {k: int(v) for k, v in re.findall(r"<tr><td>(\w+)</td><td>(\d+)</td></tr>", page.text)}


def test_the_hello_page_counts_only_the_callers_tenant(world: AuthWorld) -> None:
    token_a, token_b = world.token("clin-a"), world.token("clin-b")
    before_a, before_b = hello_counts(world, token_a), hello_counts(world, token_b)
    api = world.fhir_client(token_a)
    for _ in range(2):
        created = api.post(
            "/Observation",
            json={
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "pulse"},
                "subject": {"reference": "Patient/pa1"},
            },
        )
        assert created.status_code == 201
    deadline = time.monotonic() + 20  # the plugin counts in its consumer thread
    after_a = hello_counts(world, token_a)
    while after_a.get("Observation", 0) < before_a.get("Observation", 0) + 2:
        assert time.monotonic() < deadline, after_a
        time.sleep(0.2)
        after_a = hello_counts(world, token_a)
    after_b = hello_counts(world, token_b)
    assert after_b.get("Observation", 0) == before_b.get("Observation", 0)  # org-a's unseen
    assert "AuditEvent" not in after_a  # not the clinician's to count
    assert hello_counts(world, world.token("pat-a1", "patient/*.rs")) == {}


# -- failed sign-ins hash off the event loop ----------------------------------------------------
@pytest.mark.slow
def test_health_answers_during_a_burst_of_failed_sign_ins(world: AuthWorld) -> None:
    statuses: list[int] = []

    def bad_login(i: int) -> None:
        params, _ = world.params("user/Patient.rs")
        with httpx.Client(base_url=world.base, timeout=120) as client:
            answer = client.post(
                "/plugins/security/authorize",
                data={**params, "username": f"nobody-{i}", "password": "wrong password!"},
            )
        statuses.append(answer.status_code)

    threads = [threading.Thread(target=bad_login, args=(i,)) for i in range(40)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    health: list[float] = []
    with httpx.Client(base_url=world.base, timeout=60) as client:
        while any(t.is_alive() for t in threads) and time.monotonic() - started < 120:
            begin = time.monotonic()
            assert client.get("/healthz").status_code == 200
            health.append(time.monotonic() - begin)
            time.sleep(0.05)
    for thread in threads:
        thread.join()
    assert len(statuses) == 40 and set(statuses) <= {401, 429}
    assert health, "the burst ended before /healthz was asked"
    assert max(health) < 2.0, f"/healthz took up to {max(health):.2f} s during the burst"
    # The per-address throttle still holds: this address is now locked out.
    params, _ = world.params("user/Patient.rs")
    locked = world.http.post(
        "/plugins/security/authorize",
        data={**params, "username": "clin-a", "password": "wrong password!"},
    )
    assert locked.status_code == 429
