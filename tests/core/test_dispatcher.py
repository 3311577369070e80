"""resource_committed delivery: in order, at least once, isolated per plugin, resumable."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from fhirhub.core.http.app import create_app
from fhirhub.core.hub import build_hub
from fhirhub.core.settings import Settings
from fhirhub.sdk import Consumer, StoredVersion, hookimpl
from tests.core.fhir_samples import patient

FHIR = {"Content-Type": "application/fhir+json"}


class Recorder:
    PLUGIN_NAME = "recorder"

    def __init__(self) -> None:
        self.events: list[tuple[str, int, bool]] = []

    @hookimpl
    def resource_committed(self, event: StoredVersion, hub: Any) -> None:
        self.events.append((event.resource_id, event.version_id, event.deleted))


class Flaky:
    PLUGIN_NAME = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.seen: list[int] = []

    @hookimpl
    def resource_committed(self, event: StoredVersion, hub: Any) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("downstream system unavailable")
        self.seen.append(event.seq)


def settings(url: str, tmp_path: Path) -> Settings:
    return Settings(db=url, data_dir=tmp_path, listeners=False)


def patients_bundle(prefix: str, count: int) -> dict[str, Any]:
    """A transaction Bundle creating ``count`` Patients (MRNs ``prefix0``...)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": patient(mrn=f"{prefix}{i}"),
                "request": {"method": "POST", "url": "Patient"},
            }
            for i in range(count)
        ],
    }


def consumer_plugin(consumer: Consumer) -> Any:
    """A plugin, named after ``consumer``, that registers it."""

    class Plugin:
        PLUGIN_NAME = consumer.name

        @hookimpl
        def register_consumers(self, hub: Any) -> list[Consumer]:
            return [consumer]

    return Plugin()


def test_events_arrive_in_log_order_and_failures_are_isolated(
    database_url: str, tmp_path: Path
) -> None:
    recorder, flaky = Recorder(), Flaky(failures=2)
    hub = build_hub(settings(database_url, tmp_path), extra_plugins=[recorder, flaky])
    with TestClient(create_app(hub=hub)) as client:
        created = client.post("/fhir/Patient", content=orjson.dumps(patient()), headers=FHIR).json()
        pid = created["id"]
        client.put(
            f"/fhir/Patient/{pid}", content=orjson.dumps({**created, "active": True}), headers=FHIR
        )
        client.delete(f"/fhir/Patient/{pid}")
        assert hub.dispatcher.wait_idle(timeout=20)
    assert recorder.events == [(pid, 1, False), (pid, 2, False), (pid, 3, True)]
    assert len(flaky.seen) == 3 and flaky.seen == sorted(flaky.seen)
    hub.close()


def test_delivery_resumes_after_restart_without_repeating(
    database_url: str, tmp_path: Path
) -> None:
    first = Recorder()
    hub = build_hub(settings(database_url, tmp_path), extra_plugins=[first])
    with TestClient(create_app(hub=hub)) as client:
        client.post("/fhir/Patient", content=orjson.dumps(patient(mrn="1")), headers=FHIR)
        assert hub.dispatcher.wait_idle(timeout=20)
    # Written while no dispatcher runs (e.g. `fhirhub load`): delivered at the next start.
    with hub.store.unit_of_work() as uow:
        uow.put("Patient", "offline", {"resourceType": "Patient", "gender": "male"})
    hub.close()
    second = Recorder()
    hub = build_hub(settings(database_url, tmp_path), extra_plugins=[second])
    with TestClient(create_app(hub=hub)):
        assert hub.dispatcher.wait_idle(timeout=20)
    assert len(first.events) == 1
    assert second.events == [("offline", 1, False)]
    hub.close()


def test_search_parameter_posted_at_run_time_becomes_active(
    database_url: str, tmp_path: Path
) -> None:
    hub = build_hub(settings(database_url, tmp_path))
    with TestClient(create_app(hub=hub)) as client:
        client.post(
            "/fhir/Patient",
            content=orjson.dumps(patient(mrn="x", maritalStatus={"text": "Married"})),
            headers=FHIR,
        )
        client.post("/fhir/Patient", content=orjson.dumps(patient(mrn="y")), headers=FHIR)
        parameter = {
            "resourceType": "SearchParameter",
            "url": "http://hospital.example/SearchParameter/marital-text",
            "name": "marital-text",
            "status": "active",
            "description": "Marital status text",
            "code": "marital-text",
            "base": ["Patient"],
            "type": "string",
            "expression": "Patient.maritalStatus.text",
        }
        response = client.post(
            "/fhir/SearchParameter", content=orjson.dumps(parameter), headers=FHIR
        )
        assert response.status_code == 201, response.text
        assert hub.dispatcher.wait_idle(timeout=30)
        found = client.get(
            "/fhir/Patient", params={"marital-text": "marr"}, headers={"Prefer": "handling=strict"}
        )
        assert found.status_code == 200, found.text
        assert [e["resource"]["identifier"][0]["value"] for e in found.json()["entry"]] == ["x"]
        # Writes after the parameter are indexed by it as they happen.
        client.post(
            "/fhir/Patient",
            content=orjson.dumps(patient(mrn="z", maritalStatus={"text": "Married"})),
            headers=FHIR,
        )
        found = client.get("/fhir/Patient", params={"marital-text": "marr", "_sort": "_id"})
        assert sorted(e["resource"]["identifier"][0]["value"] for e in found.json()["entry"]) == [
            "x",
            "z",
        ]
        broken = {
            **parameter,
            "url": "http://x/bad",
            "code": "bad",
            "expression": "Patient.name.where(",
        }
        assert (
            client.post(
                "/fhir/SearchParameter", content=orjson.dumps(broken), headers=FHIR
            ).status_code
            == 400
        )
    hub.close()


class Stuck:
    PLUGIN_NAME = "stuck"

    @hookimpl
    def resource_committed(self, event: StoredVersion, hub: Any) -> None:
        raise RuntimeError("never recovers")


def test_a_consumer_that_keeps_failing_holds_only_its_own_cursor(
    database_url: str, tmp_path: Path
) -> None:
    from sqlalchemy import select

    from fhirhub.fhir_store.schema import dispatch_cursor

    recorder = Recorder()
    hub = build_hub(settings(database_url, tmp_path), extra_plugins=[recorder, Stuck()])
    with TestClient(create_app(hub=hub)) as client:
        assert hub.dispatcher is not None
        start = status_of(hub, "recorder").cursor
        client.post("/fhir/Patient", content=orjson.dumps(patient(mrn="c")), headers=FHIR)
        deadline = time.monotonic() + 10
        while status_of(hub, "recorder").cursor == start and time.monotonic() < deadline:
            time.sleep(0.05)  # the in-memory cursor moves only once the table holds it
        assert len(recorder.events) == 1
        with hub.store.read() as conn:
            cursors = dict(
                conn.execute(select(dispatch_cursor.c.consumer, dispatch_cursor.c.last_seq)).all()
            )
        assert cursors["stuck"] < cursors["recorder"]
        deadline = time.monotonic() + 10
        while status_of(hub, "stuck").last_error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status_of(hub, "stuck").last_error == "RuntimeError: never recovers"
    hub.close()


def status_of(hub: Any, name: str) -> Any:
    return next(s for s in hub.dispatcher.status() if s.name == name)


class Sleeper:
    """A consumer whose first delivery hangs for up to 60 s (a downstream system that never
    answers), released by the test."""

    PLUGIN_NAME = "sleeper"

    def __init__(self) -> None:
        import threading

        self.release = threading.Event()
        self.entered = threading.Event()

    @hookimpl
    def resource_committed(self, event: StoredVersion, hub: Any) -> None:
        self.entered.set()
        self.release.wait(timeout=60)


class Clock:
    """Records when each version reached it."""

    PLUGIN_NAME = "clock"

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}

    @hookimpl
    def resource_committed(self, event: StoredVersion, hub: Any) -> None:
        self.arrived[event.resource_id] = time.monotonic()


def test_a_consumer_stuck_for_a_minute_delays_no_other_consumer(
    database_url: str, tmp_path: Path
) -> None:
    sleeper, clock = Sleeper(), Clock()
    hub = build_hub(settings(database_url, tmp_path), extra_plugins=[sleeper, clock])
    with TestClient(create_app(hub=hub)) as client:
        latencies = []
        # The first version sends the sleeper into its hang (and warms the other thread up).
        first = client.post("/fhir/Patient", content=orjson.dumps(patient(mrn="s0")), headers=FHIR)
        deadline = time.monotonic() + 20
        while first.json()["id"] not in clock.arrived and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sleeper.entered.wait(timeout=20)
        for mrn in ("s1", "s2", "s3", "s4", "s5"):
            sent = time.monotonic()
            created = client.post(
                "/fhir/Patient", content=orjson.dumps(patient(mrn=mrn)), headers=FHIR
            ).json()
            deadline = time.monotonic() + 5
            while created["id"] not in clock.arrived and time.monotonic() < deadline:
                time.sleep(0.005)
            latencies.append(clock.arrived[created["id"]] - sent)
        assert sleeper.entered.is_set()  # the sleeper is inside its first delivery, hanging
        assert max(latencies) < 1.0, latencies  # measured: a few milliseconds each
        sleeper.release.set()
        assert hub.dispatcher is not None and hub.dispatcher.wait_idle(timeout=20)
    hub.close()


def test_a_consumer_past_its_timeout_is_reported_stalled_by_healthz(
    database_url: str, tmp_path: Path
) -> None:
    release = __import__("threading").Event()

    slow_plugin = consumer_plugin(
        Consumer("slow-projection", lambda _versions: release.wait(30), timeout_s=0.2)
    )

    hub = build_hub(settings(database_url, tmp_path), extra_plugins=[slow_plugin])
    with TestClient(create_app(hub=hub)) as client:
        client.post("/fhir/Patient", content=orjson.dumps(patient(mrn="t")), headers=FHIR)
        deadline = time.monotonic() + 10
        health = client.get("/healthz")
        while health.status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
            health = client.get("/healthz")
        assert health.status_code == 503
        assert "stalled" in health.json()["checks"]["consumer:slow-projection"]
        release.set()
        assert hub.dispatcher is not None and hub.dispatcher.wait_idle(timeout=20)
        assert client.get("/healthz").status_code == 200
    hub.close()


def test_a_projection_consumer_starts_from_the_beginning_and_is_reset_by_replay(
    database_url: str, tmp_path: Path
) -> None:
    from fhirhub.core.dispatcher import reset_consumers

    seen: list[str] = []
    resets: list[bool] = []

    class Projection:
        PLUGIN_NAME = "projection"

        @hookimpl
        def register_consumers(self, hub: Any) -> list[Consumer]:
            return [
                Consumer(
                    "patient-names",
                    lambda versions: seen.extend(v.resource_id for v in versions),
                    start="beginning",
                    types=frozenset({"Patient"}),
                    reset=lambda: (resets.append(True), seen.clear()),
                )
            ]

    hub = build_hub(settings(database_url, tmp_path))
    with hub.store.unit_of_work() as uow:  # written before the plugin was installed
        uow.put("Patient", "early", {"resourceType": "Patient"})
        uow.put(
            "Observation",
            "o",
            {"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
        )
    hub.close()
    hub = build_hub(settings(database_url, tmp_path), extra_plugins=[Projection()])
    with TestClient(create_app(hub=hub)) as client:
        client.post("/fhir/Patient", content=orjson.dumps(patient(mrn="late")), headers=FHIR)
        assert hub.dispatcher is not None and hub.dispatcher.wait_idle(timeout=20)
        assert seen[0] == "early" and len(seen) == 2  # the backfill, then the new one
    hub.close()
    hub = build_hub(settings(database_url, tmp_path), extra_plugins=[Projection()])
    # (the built-in plugins' projections, e.g. the AI index, are reset too)
    assert "patient-names" in reset_consumers(hub) and resets == [True] and seen == []
    with TestClient(create_app(hub=hub)):
        assert hub.dispatcher is not None and hub.dispatcher.wait_idle(timeout=20)
    assert seen[0] == "early" and len(seen) == 2
    hub.close()


def test_loading_cursors_survives_a_writer_overtaking_it(
    sqlite_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    """At start-up plugins write while the dispatcher reads the log head and then inserts the
    cursors of new consumers. A SQLite read transaction that another writer overtook cannot
    become a write one ("database is locked" at once, the server did not start): the
    dispatcher takes the write lock first."""
    import sqlite3

    from fhirhub.core import dispatcher as module

    hub = build_hub(settings(sqlite_url, tmp_path))
    original = module.log_head
    outcome: list[str] = []

    def overtaken(conn: Any) -> int:
        head = original(conn)
        other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=0.2)
        try:  # another writer commits between the read and the insert, if it can
            other.execute("DELETE FROM dispatch_cursor WHERE consumer = 'nobody'")
            other.commit()
            outcome.append("committed")
        except sqlite3.OperationalError:
            outcome.append("waited for the dispatcher")
        finally:
            other.close()
        return head

    monkeypatch.setattr(module, "log_head", overtaken)
    with TestClient(create_app(hub=hub)):
        assert hub.dispatcher is not None and hub.dispatcher.running
    assert outcome and outcome[0] == "waited for the dispatcher"
    hub.close()


def test_a_consumer_failing_part_way_is_retried_after_what_it_handled(
    database_url: str, tmp_path: Path
) -> None:
    """``PartialDelivery`` (SDK): the versions a batch handled before failing are not handed
    over again; the retry starts at the one that failed."""
    from fhirhub.sdk import PartialDelivery

    handed: list[int] = []
    failed = [False]

    def handle(versions: Any) -> None:
        done = 0
        for version in versions:
            if version.resource_type == "Patient" and not failed[0] and done:
                failed[0] = True
                raise PartialDelivery(done, RuntimeError("receiver down"))
            handed.append(version.seq)
            done = version.seq

    sender_plugin = consumer_plugin(Consumer("sender", handle, types=frozenset({"Patient"})))

    hub = build_hub(settings(database_url, tmp_path), extra_plugins=[sender_plugin])
    bundle = patients_bundle("p", 3)
    with TestClient(create_app(hub=hub)) as client:
        assert client.post("/fhir", content=orjson.dumps(bundle), headers=FHIR).status_code == 200
        deadline = time.monotonic() + 20
        while len(handed) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hub.dispatcher is not None and hub.dispatcher.wait_idle(timeout=20)
    assert failed[0]
    assert len(handed) == 3 and handed == sorted(set(handed))  # none twice, in order
    hub.close()


@pytest.mark.parametrize("asked", [False, True], ids=["number", "function"])
def test_a_lingering_consumer_takes_a_steady_feed_in_few_batches(
    sqlite_url: str, tmp_path: Path, asked: bool
) -> None:
    """``linger_s``: a lone write is delivered at once; writes that keep coming are gathered
    into batches at least ``linger_s`` apart; ``wait_idle`` does not wait for the linger. A
    function is asked before each delivery."""
    asks: list[float] = []

    def linger() -> float:
        asks.append(time.monotonic())
        return 1.0

    batches: list[tuple[float, int]] = []

    gatherer_plugin = consumer_plugin(
        Consumer(
            "gatherer",
            lambda versions: batches.append((time.monotonic(), len(versions))),
            types=frozenset({"Patient"}),
            linger_s=linger if asked else 1.0,
        )
    )

    hub = build_hub(settings(sqlite_url, tmp_path), extra_plugins=[gatherer_plugin])
    with TestClient(create_app(hub=hub)) as client:
        sent = time.monotonic()
        client.post("/fhir/Patient", content=orjson.dumps(patient(mrn="lone")), headers=FHIR)
        deadline = time.monotonic() + 10
        while not batches and time.monotonic() < deadline:
            time.sleep(0.01)
        assert batches and batches[0][0] - sent < 0.7  # after a quiet spell: at once
        started = time.monotonic()
        for n in range(60):  # a steady feed for about a second and a half
            client.post("/fhir/Patient", content=orjson.dumps(patient(mrn=f"f{n}")), headers=FHIR)
            time.sleep(0.025)
        waited = time.monotonic()
        assert hub.dispatcher is not None and hub.dispatcher.wait_idle(timeout=20)
        assert time.monotonic() - waited < 0.7  # hurried, not lingering
    hub.close()
    feed = [(at, size) for at, size in batches[1:]]
    assert sum(size for _, size in batches) == 61
    assert len(feed) <= (waited - started) / 1.0 + 2, feed  # one per commit would be 60
    gaps = [b[0] - a[0] for a, b in zip(feed, feed[1:], strict=False)]
    assert all(gap >= 0.95 for gap in gaps[:-1]), gaps  # the last one may be hurried
    assert bool(asks) == asked


@pytest.mark.parametrize("answer", [None, float("inf"), float("nan"), "soon", -1.0])
def test_a_linger_function_that_fails_or_answers_nonsense_never_stops_delivery(
    sqlite_url: str, tmp_path: Path, answer: Any
) -> None:
    seen: list[str] = []

    def linger() -> Any:
        if answer == "soon":
            raise RuntimeError("a plugin's bug")
        return answer

    odd_plugin = consumer_plugin(
        Consumer(
            "odd",
            lambda versions: seen.extend(v.resource_id for v in versions),
            types=frozenset({"Patient"}),
            linger_s=linger,
        )
    )

    hub = build_hub(settings(sqlite_url, tmp_path), extra_plugins=[odd_plugin])
    with TestClient(create_app(hub=hub)) as client:
        for n in range(3):
            client.post("/fhir/Patient", content=orjson.dumps(patient(mrn=f"o{n}")), headers=FHIR)
            assert hub.dispatcher is not None and hub.dispatcher.wait_idle(timeout=20)
        assert len(seen) == 3
    hub.close()


def test_passing_over_other_types_starts_no_linger(sqlite_url: str, tmp_path: Path) -> None:
    """A consumer of Observations that lingers: Patients written meanwhile move its cursor
    but deliver it nothing, so its next Observation after a quiet spell comes at once."""
    delivered: list[float] = []

    watcher_plugin = consumer_plugin(
        Consumer(
            "watcher",
            lambda versions: delivered.append(time.monotonic()),
            types=frozenset({"Observation"}),
            linger_s=3.0,
        )
    )

    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    hub = build_hub(settings(sqlite_url, tmp_path), extra_plugins=[watcher_plugin])
    with TestClient(create_app(hub=hub)) as client:
        for n in range(5):  # others' versions passing by, each moving the cursor
            client.post("/fhir/Patient", content=orjson.dumps(patient(mrn=f"w{n}")), headers=FHIR)
            time.sleep(0.1)
        assert hub.dispatcher is not None and hub.dispatcher.wait_idle(timeout=20)
        sent = time.monotonic()
        client.post("/fhir/Observation", content=orjson.dumps(observation), headers=FHIR)
        deadline = time.monotonic() + 10
        while not delivered and time.monotonic() < deadline:
            time.sleep(0.01)
        assert delivered and delivered[0] - sent < 1.5  # not the 3 s linger
    hub.close()


def test_stopping_saves_the_cursor_of_a_consumer_still_handling(
    sqlite_url: str, tmp_path: Path
) -> None:
    """The hub stops while a consumer is inside ``handle``: once it returns, its position is
    saved (a restart does not deliver that batch again)."""
    import threading

    from sqlalchemy import select

    from fhirhub.core.dispatcher import log_head
    from fhirhub.fhir_store.schema import dispatch_cursor

    inside = threading.Event()

    def slow(versions: Any) -> None:
        inside.set()
        time.sleep(1.5)

    slow_plugin = consumer_plugin(Consumer("slow", slow, types=frozenset({"Patient"})))

    hub = build_hub(settings(sqlite_url, tmp_path), extra_plugins=[slow_plugin])
    with TestClient(create_app(hub=hub)) as client:
        client.post("/fhir/Patient", content=orjson.dumps(patient(mrn="s")), headers=FHIR)
        assert inside.wait(10)
    # The app's shutdown stopped the dispatcher while ``slow`` was sleeping.
    with hub.store.read() as conn:
        head = log_head(conn)
        saved = conn.execute(
            select(dispatch_cursor.c.last_seq).where(dispatch_cursor.c.consumer == "slow")
        ).scalar()
    assert saved == head
    hub.close()


def test_a_process_taking_a_consumer_over_starts_from_the_saved_cursor(
    postgres_url: str, tmp_path: Path
) -> None:
    """PostgreSQL, two API processes (two hubs here, each with its own lock connection): the
    one that takes a consumer over when its owner stops starts from the cursor the owner
    saved, not from the one it read at its own start (which would deliver again)."""

    def plugin(seen: list[str]) -> Any:
        return consumer_plugin(
            Consumer(
                "counter",
                lambda versions: seen.extend(v.resource_id for v in versions),
                types=frozenset({"Patient"}),
            )
        )

    first: list[str] = []
    second: list[str] = []
    hub_a = build_hub(settings(postgres_url, tmp_path / "a"), extra_plugins=[plugin(first)])
    hub_b = build_hub(settings(postgres_url, tmp_path / "b"), extra_plugins=[plugin(second)])
    # hub_a starts alone, so it holds the consumer's lock when hub_b starts.
    client_a = TestClient(create_app(hub=hub_a)).__enter__()
    try:
        for n in range(3):
            client_a.post("/fhir/Patient", content=orjson.dumps(patient(mrn=f"t{n}")), headers=FHIR)
        assert hub_a.dispatcher is not None and hub_a.dispatcher.wait_idle(timeout=20)
        assert len(first) == 3
        with TestClient(create_app(hub=hub_b)) as client_b:
            client_a.__exit__(None, None, None)  # hub_a stops: its lock is free, cursor saved
            late = client_b.post(
                "/fhir/Patient", content=orjson.dumps(patient(mrn="late")), headers=FHIR
            ).json()["id"]
            deadline = time.monotonic() + 20
            while late not in first + second and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        client_a.__exit__(None, None, None)
    assert len(first) == 3 and second == [late]  # taken over, nothing delivered twice
    hub_a.close()
    hub_b.close()


def test_caught_up_is_called_once_the_log_has_nothing_more(sqlite_url: str, tmp_path: Path) -> None:
    """``caught_up`` follows a stretch of deliveries once nothing more of the consumer's types
    is there (even when others' versions pass by), once per stretch; a failing one is retried."""
    calls: list[int] = []
    handled: list[int] = []

    def caught_up() -> None:
        calls.append(len(handled))
        if len(calls) == 1:
            raise RuntimeError("retried at the next step")

    tail_plugin = consumer_plugin(
        Consumer(
            "tail",
            lambda versions: handled.append(len(versions)),
            types=frozenset({"Patient"}),
            batch_size=2,
            caught_up=caught_up,
        )
    )

    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    hub = build_hub(settings(sqlite_url, tmp_path), extra_plugins=[tail_plugin])
    with TestClient(create_app(hub=hub)) as client:
        bundle = patients_bundle("c", 4)
        assert client.post("/fhir", content=orjson.dumps(bundle), headers=FHIR).status_code == 200
        deadline = time.monotonic() + 10
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert handled == [2, 2] and calls == [2, 2]  # after both batches; the retry succeeded
        client.post("/fhir/Observation", content=orjson.dumps(observation), headers=FHIR)
        assert hub.dispatcher is not None and hub.dispatcher.wait_idle(timeout=20)
        time.sleep(1.5)  # a poll or two: nothing handed over, so nothing owed
        assert calls == [2, 2]
    hub.close()


def test_a_stopped_dispatcher_releases_its_locks_at_once(postgres_url: str, tmp_path: Path) -> None:
    """PostgreSQL: the advisory locks are session locks, which a pooled connection keeps after
    it is returned (a rollback does not release them); a dispatcher that stops while its process
    lives on (the app's shutdown, a restart) must free its consumers for the other processes,
    and take nothing again once stopped."""
    from sqlalchemy import create_engine

    hub = build_hub(settings(postgres_url, tmp_path))
    assert hub.dispatcher is not None
    locks = hub.dispatcher.locks
    assert locks.owns("consumer:probe")
    key = int.from_bytes(hashlib.sha256(b"consumer:probe").digest()[:8], "big", signed=True)
    other = create_engine(postgres_url)
    try:
        with other.connect() as conn:
            assert not conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({key})").scalar()
            conn.rollback()
            locks.close()
            assert conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({key})").scalar()
            conn.exec_driver_sql(f"SELECT pg_advisory_unlock({key})")
            conn.commit()
    finally:
        other.dispose()
        hub.close()
