"""Two API processes on one PostgreSQL database with ``FHIRHUB_BROKER=redis://``: a websocket
client connected to process 2 receives the events of writes made on process 1."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import backends
from tests.conftest import LiveServer
from tests.plugins.subscriptions.conftest import glucose

REDIS = os.environ.get("FHIRHUB_TEST_REDIS", "redis://127.0.0.1:6379/5")


def redis_available() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS, socket_connect_timeout=1).ping())
    except Exception:
        return False


@pytest.fixture
def shared_database() -> Iterator[str]:
    try:
        url = backends.postgres_database(f"subs_{uuid.uuid4().hex[:8]}")
    except Exception as exc:  # no PostgreSQL on this machine
        pytest.skip(f"PostgreSQL not available: {exc}")
    yield url
    backends.drop_postgres_database(url)


def websocket_events(url: str, token: str, count: int, write: object) -> list[int]:
    import websockets

    async def run() -> list[int]:
        numbers: list[int] = []
        async with websockets.connect(url) as socket:
            await socket.send(f"bind-with-token {token}")
            handshake = json.loads(await asyncio.wait_for(socket.recv(), 10))
            assert handshake["type"] == "history"
            await asyncio.get_running_loop().run_in_executor(None, write)  # type: ignore[arg-type]
            while len(numbers) < count:
                bundle = json.loads(await asyncio.wait_for(socket.recv(), 20))
                status = bundle["entry"][0]["resource"]
                numbers += [
                    int(part["valueString"])
                    for p in status["parameter"]
                    if p["name"] == "notification-event"
                    for part in p["part"]
                    if part["name"] == "event-number"
                ]
        return numbers

    return asyncio.run(run())


@pytest.mark.slow
def test_a_client_on_process_two_gets_events_written_on_process_one(
    shared_database: str, tmp_path: Path
) -> None:
    if not redis_available():
        pytest.skip("Redis not available")
    env = {"FHIRHUB_BROKER": REDIS, "FHIRHUB_PLUGINS": "-mpi,-audit"}
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = LiveServer(shared_database, tmp_path / "one", env=env).start()
    two = LiveServer(shared_database, tmp_path / "two", env=env).start()
    try:
        with httpx.Client(timeout=30) as client:
            created = client.post(
                f"{one.fhir}/Subscription",
                json={
                    "resourceType": "Subscription",
                    "status": "requested",
                    "reason": "scale-out",
                    "criteria": "Observation?code=2339-0",
                    "channel": {"type": "websocket"},
                },
            )
            assert created.status_code == 201, created.text
            sid = created.json()["id"]
            token = client.get(f"{two.fhir}/Subscription/{sid}/$get-ws-binding-token")
            assert token.status_code == 200, token.text
            values = {p["name"]: list(p.values())[1] for p in token.json()["parameter"]}

            def write() -> None:
                for value in (201, 202, 203):
                    response = client.post(f"{one.fhir}/Observation", json=glucose(value))
                    assert response.status_code == 201

            ws_url = f"ws://127.0.0.1:{two.port}/plugins/subscriptions/ws"
            assert websocket_events(ws_url, values["token"], 3, write) == [1, 2, 3]
    finally:
        one.stop()
        two.stop()
