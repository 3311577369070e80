"""A hub with messaging, two tenants and users linked to Practitioners (``X-Test-Caller``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub, build_hub
from fhirhub.sdk import Access, acting_as, hookimpl, parse_scopes, system_for, transaction
from tests.conftest import make_settings
from tests.tenants import add_tenants

USERS = {"alice": "org-a", "bob": "org-a", "carol": "org-b"}


def user(name: str) -> Access:
    return Access(
        f"user:{name}",
        tenant=USERS[name],
        roles=frozenset({"clinician"}),
        scopes=parse_scopes("user/*.cruds"),
    )


class HeaderAuthenticator:
    @hookimpl
    def authenticate_request(self, request: Any, hub: Hub) -> Access | None:
        name = request.headers.get("x-test-caller")
        return user(name) if name in USERS else None


def as_(name: str) -> dict[str, str]:
    return {"X-Test-Caller": name, "Content-Type": "application/fhir+json"}


@pytest.fixture
def hub(sqlite_url: str, tmp_path: Path) -> Iterator[Hub]:
    settings = make_settings(sqlite_url, tmp_path, auth="on", listeners=False, plugins="-mpi")
    hub = build_hub(settings, extra_plugins=[HeaderAuthenticator()])
    add_tenants(hub, "org-a", "org-b")
    yield hub
    hub.close()


@pytest.fixture
def practitioners(hub: Hub) -> dict[str, str]:
    """Each user's Practitioner reference, in the user's tenant."""
    refs = {}
    for name, tenant in USERS.items():
        with acting_as(system_for(tenant)), transaction(hub) as tx:
            result = tx.create(
                {
                    "resourceType": "Practitioner",
                    "identifier": [{"system": "urn:fhirhub:user", "value": name}],
                    "name": [{"family": name.title()}],
                }
            )
        refs[name] = result.version.reference
    return refs


@pytest.fixture
def client(hub: Hub, practitioners: dict[str, str]) -> Iterator[TestClient]:
    from fhirhub.core.http.app import create_app

    with TestClient(create_app(hub=hub), base_url="http://testserver") as test_client:
        yield test_client


def message(to: str, text: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Communication",
        "status": "in-progress",
        "sent": "2026-12-07T08:00:00Z",
        "recipient": [{"reference": to}],
        "payload": [{"contentString": text}],
        **extra,
    }
