"""Two tenants behind one hub, served over real HTTP (uvicorn on a free port), with callers
named by a test header: the REST findings of the security review are checked the way a client
meets them.

Callers are :class:`~fhirhub.core.access.Access` objects chosen by ``X-Test-Caller`` (the
enforcement layer alone; tokens are tested with the security plugin): ``clin-a`` and
``clin-b`` (clinicians of org-a and org-b, ``user/*.cruds``), ``pat-a1`` and ``pat-a2``
(patient apps of org-a's patients pa1 and pa2, ``patient/*.cruds``), ``root`` (super admin, no
tenant).

Data, written by the system with tenant labels (each tenant is an Organization): org-a has Patients pa1 and pa2 with the
Observations obs-a1 and obs-a2; org-b has Patient pb1 with Observation obs-b1.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from fhirhub.core.access import Access, parse_scopes
from fhirhub.core.hookspecs import hookimpl
from fhirhub.core.hub import Hub, build_hub
from fhirhub.sdk import SYSTEM, acting_as, transaction, with_tenant
from tests.conftest import free_port, make_settings
from tests.tenants import add_tenants

CALLERS: dict[str, Access] = {
    "clin-a": Access(
        "user:clin-a",
        tenant="org-a",
        roles=frozenset({"clinician"}),
        scopes=parse_scopes("user/*.cruds"),
    ),
    "clin-b": Access(
        "user:clin-b",
        tenant="org-b",
        roles=frozenset({"clinician"}),
        scopes=parse_scopes("user/*.cruds"),
    ),
    "pat-a1": Access(
        "user:pat-a1",
        tenant="org-a",
        roles=frozenset({"patient"}),
        scopes=parse_scopes("patient/*.cruds"),
        patient="pa1",
    ),
    "pat-a2": Access(
        "user:pat-a2",
        tenant="org-a",
        roles=frozenset({"patient"}),
        scopes=parse_scopes("patient/*.cruds"),
        patient="pa2",
    ),
    "root": Access(
        "user:root", roles=frozenset({"super_admin"}), scopes=parse_scopes("user/*.cruds")
    ),
}


class HeaderCallers:
    """``X-Test-Caller: name`` -> one of :data:`CALLERS`."""

    @hookimpl
    def authenticate_request(self, request: Any, hub: Hub) -> Access | None:
        name = request.headers.get("x-test-caller")
        return CALLERS.get(name) if name else None


def patient(pid: str, family: str = "Doe") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": family}]}


def observation(oid: str | None, subject: str, value: float = 1.0) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{subject}"},
        "effectiveDateTime": "2024-03-01T10:00:00Z",
        "valueQuantity": {"value": value, "unit": "/min"},
    }
    if oid is not None:
        resource["id"] = oid
    return resource


def seed(hub: Hub) -> None:
    """The two tenants' data (see the module docstring), written by the system."""
    add_tenants(hub, "org-a", "org-b")
    rows = [
        ("org-a", patient("pa1", "Alpha")),
        ("org-a", patient("pa2", "Beta")),
        ("org-a", observation("obs-a1", "pa1")),
        ("org-a", observation("obs-a2", "pa2")),
        ("org-b", patient("pb1", "Elsewhere")),
        ("org-b", observation("obs-b1", "pb1")),
    ]
    with acting_as(SYSTEM), transaction(hub) as tx:
        for tenant, resource in rows:
            with_tenant(resource, tenant)
            tx.update(resource)


class RestWorld:
    """The hub, its base URL and one HTTP client per caller."""

    def __init__(self, hub: Hub, base: str) -> None:
        self.hub = hub
        self.base = base  # http://127.0.0.1:PORT
        self.fhir = f"{base}/fhir"
        self._clients: dict[str, httpx.Client] = {}

    def caller(self, name: str) -> httpx.Client:
        if name not in self._clients:
            self._clients[name] = httpx.Client(
                base_url=self.fhir, headers={"X-Test-Caller": name}, timeout=60
            )
        return self._clients[name]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


@contextmanager
def served(hub: Hub) -> Iterator[str]:
    """``hub``'s app on a real uvicorn server in a thread; yields ``http://127.0.0.1:PORT``."""
    from fhirhub.core.http.app import create_app

    port = free_port()
    # No logging configuration of its own: uvicorn's would change the level of the
    # ``uvicorn.*`` loggers for every later test in the process.
    config = uvicorn.Config(
        create_app(hub=hub),
        host="127.0.0.1",
        port=port,
        log_config=None,
        log_level=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def rest_world(database_url: str, data_dir: Path, **settings: Any) -> Iterator[RestWorld]:
    """The seeded two-tenant world on ``database_url``, served over HTTP."""
    hub = build_hub(
        make_settings(database_url, data_dir, auth="on", listeners=False, **settings),
        extra_plugins=[HeaderCallers()],
    )
    seed(hub)
    try:
        with served(hub) as base:
            world = RestWorld(hub, base)
            try:
                yield world
            finally:
                world.close()
    finally:
        hub.close()
