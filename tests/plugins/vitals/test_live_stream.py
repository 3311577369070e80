"""The dashboard's live stream (Server-Sent Events) over real HTTP: in one process each tenant's
dashboard hears its own alerts only; with two API processes on one PostgreSQL database and
``FHIRHUB_BROKER=redis://``, a dashboard connected to process 2 hears the alert of a write made
on process 1, whose consumer scored it."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from fhirhub.core.hub import Hub
from tests import backends
from tests.conftest import LiveServer
from tests.plugins.subscriptions.test_scale_out import REDIS, redis_available
from tests.plugins.vitals.conftest import as_, vitals_bundle
from tests.plugins.vitals.test_alerts import HIGH
from tests.serving import served_app

STREAM = "/plugins/vitals/api/stream"


def first_alert(
    base: str, headers: dict[str, str], write: Callable[[], None], timeout: float = 30.0
) -> dict[str, Any]:
    """Open the stream, run ``write`` once it is connected, return the first alert event."""
    with (
        httpx.Client(timeout=httpx.Timeout(timeout)) as client,
        client.stream("GET", base + STREAM, headers=headers) as response,
    ):
        assert response.status_code == 200, response.read()
        lines = response.iter_lines()
        assert next(lines) == ": connected"
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        kind = ""
        deadline = time.monotonic() + timeout
        for line in lines:
            assert time.monotonic() < deadline, "no alert in time"
            if line.startswith("event: "):
                kind = line[len("event: ") :]
            elif line.startswith("data: ") and kind == "alert":
                event: dict[str, Any] = json.loads(line[len("data: ") :])
                writer.join(timeout)  # what it wrote is known to the caller
                return event
    raise AssertionError("the stream ended without an alert")


def write_high_set(fhir: str, headers: dict[str, str] | None = None) -> str:
    """A patient and a high-scoring set of vitals for it; the patient's id."""
    with httpx.Client(timeout=30, headers=headers) as client:
        created = client.post(
            f"{fhir}/Patient", json={"resourceType": "Patient", "name": [{"family": "Live"}]}
        )
        assert created.status_code == 201, created.text
        patient = str(created.json()["id"])
        response = client.post(fhir, json=vitals_bundle(patient, **HIGH))
        assert response.status_code == 200, response.text
    return patient


@pytest.fixture
def served(hub: Hub) -> Iterator[str]:
    from fhirhub.core.http.app import create_app

    with served_app(create_app(hub=hub)) as base:
        yield base


def test_one_process_each_tenant_hears_its_own_alerts(served: str) -> None:
    """No broker: the fan-out is in memory. Org B's dashboard, open while org A's patient
    alerts first, hears only its own patient's alert."""
    patients: dict[str, str] = {}

    def write_both() -> None:
        patients["a"] = write_high_set(f"{served}/fhir", as_("nurse-a"))
        time.sleep(0.5)  # org A's alert goes out first
        patients["b"] = write_high_set(f"{served}/fhir", as_("nurse-b"))

    event = first_alert(served, as_("nurse-b"), write_both)
    assert event["patient"] == patients["b"]
    assert event["flag"] and event["title"].startswith(("NEWS2", "qSOFA"))


@pytest.fixture
def shared_database() -> Iterator[str]:
    try:
        url = backends.postgres_database(f"vitals_{uuid.uuid4().hex[:8]}")
    except Exception as exc:  # no PostgreSQL on this machine
        pytest.skip(f"PostgreSQL not available: {exc}")
    yield url
    backends.drop_postgres_database(url)


def wait_for_consumer_lock(url: str, consumer: str, timeout: float = 60.0) -> None:
    """Wait until a process holds ``consumer``'s session advisory lock (core/dispatcher.py)
    on this database: the process that delivers the log to it."""
    key = int.from_bytes(hashlib.sha256(f"consumer:{consumer}".encode()).digest()[:8], "big")
    engine = create_engine(url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                held = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                        " AND database = (SELECT oid FROM pg_database"
                        "  WHERE datname = current_database())"
                        " AND classid::text::bigint = :high AND objid::text::bigint = :low"
                        " AND objsubid = 1"
                    ),
                    {"high": key >> 32, "low": key & 0xFFFFFFFF},
                ).scalar()
            if held:
                return
            time.sleep(0.2)
    finally:
        engine.dispose()
    raise AssertionError(f"no process took the {consumer} consumer")


@pytest.mark.slow
def test_a_dashboard_on_process_two_hears_alerts_scored_on_process_one(
    shared_database: str, tmp_path: Path
) -> None:
    if not redis_available():
        pytest.skip("Redis not available")
    # Each API process with its worker process, which scores and publishes through Redis.
    env = {
        "FHIRHUB_BROKER": REDIS,
        "FHIRHUB_PLUGINS": "-mpi,-audit",
        "FHIRHUB_WORKER_PROCESS": "on",
    }
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = LiveServer(shared_database, tmp_path / "one", env=env).start()
    two: LiveServer | None = None
    try:
        # Process one runs the scoring consumer (the first to take its lock keeps it), so
        # process two's dashboard can only hear the alert through the broker.
        wait_for_consumer_lock(shared_database, "vitals-scoring")
        two = LiveServer(shared_database, tmp_path / "two", env=env).start()
        patients: list[str] = []
        event = first_alert(two.base, {}, lambda: patients.append(write_high_set(one.fhir)))
        assert patients and event["patient"] == patients[0]
        assert event["flag"] and event["title"].startswith(("NEWS2", "qSOFA"))
    finally:
        stopping = [threading.Thread(target=s.stop) for s in (one, two) if s is not None]
        for thread in stopping:  # each may wait its graceful shutdown: in parallel
            thread.start()
        for thread in stopping:
            thread.join()
