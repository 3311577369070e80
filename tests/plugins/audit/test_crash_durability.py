"""Finding 17: every acknowledged request's AuditEvent survives ``kill -9``.

A real server process answers N requests (searches and creates), is killed with SIGKILL with
its batch writer made slow enough that nothing was stored yet, and is started again: the new
process stores the dead one's journal, and every request the client got an answer for has its
AuditEvent (found by the query it ran or the resource it created).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import create_engine, select

from fhirhub.fhir_store.schema import resource_current
from tests.conftest import REPO, free_port
from tests.plugins.audit.header_auth import as_user

REQUESTS = 200


def start(database_url: str, data_dir: Path, *flags: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "FHIRHUB_AUTH": "on"}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.plugins.audit.crash_server", str(port), database_url]
        + [str(data_dir), *flags],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(data_dir / f"server-{port}.log").open("wb"),
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.1)
        if process.poll() is not None:
            break
    process.kill()
    raise AssertionError((data_dir / f"server-{port}.log").read_text())


def stored_events(database_url: str) -> list[dict[str, Any]]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(resource_current.c.content).where(
                    resource_current.c.resource_type == "AuditEvent",
                    resource_current.c.deleted.is_(False),
                )
            ).scalars()
            return [orjson.loads(bytes(row)) for row in rows]
    finally:
        engine.dispose()


@pytest.mark.slow
def test_acknowledged_requests_keep_their_audit_events_across_kill_9(
    database_url: str, tmp_path: Path
) -> None:
    process, base = start(database_url, tmp_path, "--slow-writer")
    searched: set[str] = set()
    created: set[str] = set()
    try:
        with httpx.Client(base_url=f"{base}/fhir", headers=as_user("alice"), timeout=30) as client:
            for n in range(REQUESTS):
                if n % 4 == 3:
                    body = {"resourceType": "Patient", "name": [{"family": f"Crash{n}"}]}
                    response = client.post("/Patient", content=orjson.dumps(body))
                    assert response.status_code == 201, response.text
                    created.add(f"Patient/{response.json()['id']}")
                else:
                    response = client.get("/Patient", params={"family": f"K{n}"})
                    assert response.status_code == 200, response.text
                    searched.add(f"Patient?family=K{n}")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    assert len(searched) + len(created) == REQUESTS
    before = stored_events(database_url)
    assert len(before) < REQUESTS, "the writer stored the events before the kill: no crash test"

    process, base = start(database_url, tmp_path)  # a normal writer: stores the journal
    process.send_signal(signal.SIGTERM)  # a clean stop stores everything queued
    assert process.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises it after shutdown
    events = stored_events(database_url)
    descriptions = {
        entity.get("description") for event in events for entity in event.get("entity", [])
    }
    references = {
        entity.get("what", {}).get("reference")
        for event in events
        for entity in event.get("entity", [])
    }
    assert searched - descriptions == set()
    assert created - references == set()
    assert len({event["id"] for event in events}) == len(events) >= REQUESTS
    assert list((tmp_path / "audit-journal").glob("*.ndjson")) == []
