"""A hub with the subscriptions plugin, a test authenticator (``X-Test-Caller``), two tenants,
and a real HTTP receiver on loopback that can be told to fail."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub, build_hub
from fhirhub.sdk import Access, hookimpl, parse_scopes
from tests.conftest import make_settings
from tests.tenants import add_tenants

#: Fast retries so that outages of a fraction of a second exercise the back-off.
FAST = {"retry_initial_s": 0.05, "retry_max_interval_s": 0.4, "give_up_after_s": 3600}

CALLERS: dict[str, Access] = {
    "clinician-a": Access(
        "user:clin-a",
        tenant="org-a",
        roles=frozenset({"clinician"}),
        scopes=parse_scopes("user/*.cruds"),
    ),
    "clinician-b": Access(
        "user:clin-b",
        tenant="org-b",
        roles=frozenset({"clinician"}),
        scopes=parse_scopes("user/*.cruds"),
    ),
    "other-a": Access(
        "user:other-a",
        tenant="org-a",
        roles=frozenset({"clinician"}),
        scopes=parse_scopes("user/*.cruds"),
    ),
}


def patient_caller(patient_id: str) -> Access:
    return Access(
        "user:pat",
        tenant="org-a",
        roles=frozenset({"patient"}),
        scopes=parse_scopes("patient/*.rs patient/Subscription.cruds"),
        patient=patient_id,
    )


class HeaderAuthenticator:
    @hookimpl
    def authenticate_request(self, request: Any, hub: Hub) -> Access | None:
        if patient := request.headers.get("x-test-patient"):
            return patient_caller(patient)
        name = request.headers.get("x-test-caller")
        return CALLERS.get(name) if name else None


def as_(caller: str) -> dict[str, str]:
    return {"X-Test-Caller": caller, "Content-Type": "application/fhir+json"}


@pytest.fixture
def hub(sqlite_url: str, tmp_path: Path) -> Iterator[Hub]:
    settings = make_settings(
        sqlite_url,
        tmp_path,
        auth="on",
        listeners=False,
        plugins="-mpi",
        plugin_config={"subscriptions": FAST},
    )
    hub = build_hub(settings, extra_plugins=[HeaderAuthenticator()])
    add_tenants(hub, "org-a", "org-b")
    yield hub
    hub.close()


@pytest.fixture
def client(hub: Hub) -> Iterator[TestClient]:
    from fhirhub.core.http.app import create_app

    with TestClient(create_app(hub=hub), base_url="http://testserver") as test_client:
        yield test_client


class Receiver:
    """A rest-hook endpoint: records every POST (body and headers), answers 500 while
    ``failing`` is set; a POST arriving while ``holding`` is set waits until it is cleared,
    then is answered 500 (not recorded)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.attempts = 0
        self.failing = threading.Event()
        self.holding = threading.Event()
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.arrived:
                    receiver.attempts += 1
                    receiver.arrived.notify_all()
                if receiver.holding.is_set():
                    while receiver.holding.is_set():
                        time.sleep(0.01)
                    self.send_response(500)
                    self.end_headers()
                    return
                with receiver.arrived:
                    if receiver.failing.is_set():
                        self.send_response(500)
                        self.end_headers()
                        return
                    receiver.received.append(orjson.loads(body) if body else {})
                    receiver.headers.append(dict(self.headers))
                    receiver.arrived.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def notifications(self, kind: str = "event-notification") -> list[dict[str, Any]]:
        return [b for b in self.received if notification_type(b) == kind]

    def event_numbers(self) -> list[int]:
        return [n for b in self.notifications() for n in event_numbers(b)]

    def wait_for(self, count: int, timeout: float = 20.0) -> list[int]:
        """Wait until ``count`` events arrived; the event numbers received so far."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(set(self.event_numbers())) < count and time.monotonic() < deadline:
                self.arrived.wait(timeout=0.1)
        return self.event_numbers()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def status_of(bundle: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = bundle["entry"][0]["resource"]
    return resource


def parameter(status: dict[str, Any], name: str) -> Any:
    for p in status["parameter"]:
        if p["name"] == name:
            return next(v for k, v in p.items() if k.startswith("value"))
    return None


def notification_type(bundle: dict[str, Any]) -> str:
    return str(parameter(status_of(bundle), "type"))


def event_numbers(bundle: dict[str, Any]) -> list[int]:
    return [
        int(part["valueString"])
        for p in status_of(bundle)["parameter"]
        if p["name"] == "notification-event"
        for part in p["part"]
        if part["name"] == "event-number"
    ]


def subscription(criteria: str, endpoint: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "test",
        "criteria": criteria,
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "header": ["Authorization: Bearer secret-for-the-receiver"],
        },
        **extra,
    }


def glucose(value: float, patient: str | None = None) -> dict[str, Any]:
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
        "valueQuantity": {"value": value, "unit": "mg/dL"},
    }
    if patient:
        observation["subject"] = {"reference": f"Patient/{patient}"}
    return observation


def post(client: TestClient, caller: str, resource: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=as_(caller))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def settle(hub: Hub) -> None:
    assert hub.dispatcher is not None
    assert hub.dispatcher.wait_idle(timeout=30)
