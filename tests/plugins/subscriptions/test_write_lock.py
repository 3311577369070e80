"""Notifications do not wait for the database's write lock: on SQLite a loading client's
transaction Bundle holds the only write lock for its whole length, and a notification that
waited to be stored first waited for it."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from fhirhub.core.hub import Hub, build_hub
from fhirhub.fhir_store.schema import dispatch_cursor
from fhirhub.plugins.subscriptions import model
from fhirhub.sdk import StoredVersion, hookimpl
from tests.conftest import make_settings
from tests.plugins.subscriptions.conftest import (
    FAST,
    HeaderAuthenticator,
    Receiver,
    glucose,
    post,
    settle,
    subscription,
)
from tests.tenants import add_tenants

HIGH_GLUCOSE = "Observation?code=http://loinc.org|2339-0&value-quantity=gt200"


class LockAfterCommit:
    """Once armed, takes the database's write lock right after the next Observation commit, in the
    committing thread (before the consumers are woken), as the next transaction of a
    concurrent load would, and holds it until released."""

    PLUGIN_NAME = "lock-after-commit"

    def __init__(self, path: str) -> None:
        self.path = path
        self.armed = threading.Event()
        self.conn: sqlite3.Connection | None = None

    @hookimpl(tryfirst=True)
    def after_commit(self, versions: list[StoredVersion], hub: Any) -> None:
        # The next commit of an Observation (not, say, the audit writer's batch: the POST
        # would then wait for this lock itself).
        observed = any(v.resource_type == "Observation" for v in versions)
        if observed and self.armed.is_set() and self.conn is None:
            self.armed.clear()
            self.conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=30, check_same_thread=False
            )
            self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        if self.conn is not None:
            self.conn.execute("ROLLBACK")
            self.conn.close()
            self.conn = None


@pytest.fixture
def locked_hub(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[Hub, LockAfterCommit]]:
    settings = make_settings(
        sqlite_url,
        tmp_path,
        auth="on",
        listeners=False,
        plugins="-mpi",
        plugin_config={"subscriptions": FAST},
    )
    lock = LockAfterCommit(sqlite_url.removeprefix("sqlite:///"))
    hub = build_hub(settings, extra_plugins=[HeaderAuthenticator(), lock])
    add_tenants(hub, "org-a", "org-b")
    yield hub, lock
    lock.release()
    hub.close()


def test_a_notification_is_sent_while_a_writer_holds_the_lock_and_stored_after(
    locked_hub: tuple[Hub, LockAfterCommit], receiver: Receiver
) -> None:
    from fhirhub.core.http.app import create_app

    hub, lock = locked_hub
    with TestClient(create_app(hub=hub), base_url="http://testserver") as client:
        created = post(client, "clinician-a", subscription(HIGH_GLUCOSE, receiver.url))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the handshake sent and recorded
            with hub.store.read() as conn:
                pending = conn.execute(
                    select(model.state.c.handshake_pending).where(model.state.c.id == created["id"])
                ).scalar()
            if pending is False or pending == 0:
                break
            time.sleep(0.05)
        assert receiver.notifications("handshake") and pending is not None and not pending
        settle(hub)
        lock.armed.set()
        post(client, "clinician-a", glucose(250))
        assert lock.conn is not None  # the write lock is held from the commit on
        # Sent while the lock is held (it was stored first, after the lock, before).
        assert receiver.wait_for(1, timeout=10) == [1]
        with hub.store.read() as conn:
            stored = conn.execute(
                select(model.event.c.event_number).where(
                    model.event.c.subscription_id == created["id"]
                )
            ).all()
        assert stored == []  # not stored yet: the writer waits for the lock
        lock.release()
        settle(hub)
        with hub.store.read() as conn:
            state = conn.execute(select(model.state).where(model.state.c.id == created["id"])).one()
            head = conn.execute(
                select(dispatch_cursor.c.last_seq).where(
                    dispatch_cursor.c.consumer == "subscriptions"
                )
            ).scalar_one()
            numbers = conn.execute(
                select(model.event.c.event_number).where(
                    model.event.c.subscription_id == created["id"]
                )
            ).all()
        assert [n for (n,) in numbers] == [1] and state.event_count == 1
        assert head >= state.last_seq  # the cursor moved once the event was stored
        post(client, "clinician-a", glucose(300))
        assert receiver.wait_for(2) == [1, 2]  # nothing sent twice, numbering goes on


def test_events_of_searched_criteria_are_sent_only_once_stored(
    locked_hub: tuple[Hub, LockAfterCommit], receiver: Receiver
) -> None:
    """A chain is answered by a search of the current data, which a crash before the batch
    is stored could answer differently on the second try: such events are sent only after
    they are stored, so an event number once sent never names another resource."""
    from fhirhub.core.http.app import create_app

    hub, lock = locked_hub
    with TestClient(create_app(hub=hub), base_url="http://testserver") as client:
        smith = post(
            client, "clinician-a", {"resourceType": "Patient", "name": [{"family": "Smith"}]}
        )
        post(
            client,
            "clinician-a",
            subscription("Observation?subject:Patient.name=Smith&code=2339-0", receiver.url),
        )
        deadline = time.monotonic() + 20
        while not receiver.notifications("handshake") and time.monotonic() < deadline:
            time.sleep(0.05)
        settle(hub)
        sent = 0
        for attempt in range(3):
            lock.armed.set()
            post(client, "clinician-a", glucose(250 + attempt, patient=smith["id"]))
            assert lock.conn is not None
            with hub.store.read() as conn:  # WAL: readable while the lock is held
                stored = conn.execute(select(model.event.c.event_number)).all()
            if len(stored) > sent:
                # The consumer's one-second poll took the version, and stored it, before the
                # lock was taken: nothing to learn from this round.
                lock.release()
                sent = len(stored)
                assert receiver.wait_for(sent) == list(range(1, sent + 1))
                continue
            time.sleep(2)  # the in-memory criteria of the test above are sent within this
            assert receiver.event_numbers() == list(range(1, sent + 1))  # not stored, not sent
            lock.release()
            assert receiver.wait_for(sent + 1) == list(range(1, sent + 2))
            break
        else:
            pytest.fail("the lock was never taken before the consumer stored the event")
