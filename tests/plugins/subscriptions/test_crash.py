"""A hub killed with SIGKILL between commit and delivery loses nothing: after a restart every
event arrives, in order (at least once: a notification whose answer was lost may come again
with the same event numbers, never out of order)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from tests.plugins.subscriptions.conftest import Receiver, glucose, subscription
from tests.serving import cmdline, descendants, running

FAST_ENV = {
    "FHIRHUB_SUBSCRIPTIONS_RETRY_INITIAL_S": "0.05",
    "FHIRHUB_SUBSCRIPTIONS_RETRY_MAX_INTERVAL_S": "0.3",
    # As `fhirhub serve` runs on several cores: the consumer and its delivery in the worker.
    "FHIRHUB_WORKER_PROCESS": "on",
}


def in_order_at_least_once(numbers: list[int], count: int) -> None:
    assert sorted(set(numbers)) == list(range(1, count + 1)), numbers
    # Repeats are only a resend of the tail already sent: the sequence never goes back
    # further than a resend and never skips.
    highest = 0
    for number in numbers:
        assert number <= highest + 1, numbers
        highest = max(highest, number)


@pytest.mark.slow
def test_sigkill_between_commit_and_delivery_loses_nothing(sqlite_url: str, tmp_path: Path) -> None:
    receiver = Receiver()
    server = LiveServer(sqlite_url, tmp_path, env=FAST_ENV).start()
    try:
        with httpx.Client(base_url=server.fhir, timeout=30) as client:
            response = client.post(
                "/Subscription", json=subscription("Observation?code=2339-0", receiver.url)
            )
            assert response.status_code == 201, response.text
            receiver.failing.set()  # committed, queued, not delivered
            for value in range(1, 11):
                assert client.post("/Observation", json=glucose(value)).status_code == 201
            # And a burst the consumer has likely not even evaluated when the kill comes.
            for value in range(11, 31):
                assert client.post("/Observation", json=glucose(value)).status_code == 201
        # The failing POSTs go through a sender process (of the worker process, which serves
        # the subscriptions consumer, or of the API process without one).
        deadline = time.monotonic() + 15
        while not any(b"sendproc" in cmdline(pid) for pid in descendants(server.process.pid)):
            assert time.monotonic() < deadline, "no sender process"
            time.sleep(0.02)
        children = descendants(server.process.pid)
        server.kill()
        # The sender process ends too (the end of its input), with nothing left behind.
        deadline = time.monotonic() + 15
        while any(running(pid) for pid in children):
            assert time.monotonic() < deadline, "the sender process outlived the hub"
            time.sleep(0.05)
        receiver.failing.clear()
        server = LiveServer(sqlite_url, tmp_path, env=FAST_ENV).start()  # same database
        numbers = receiver.wait_for(30, timeout=60)
        in_order_at_least_once(numbers, 30)
        values = [
            e["resource"]["valueQuantity"]["value"]
            for b in receiver.notifications()
            for e in b["entry"][1:]
        ]
        assert sorted(set(values)) == list(range(1, 31))
    finally:
        server.stop()
        receiver.close()
