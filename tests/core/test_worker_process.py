"""The worker process: consumers marked ``worker_process`` run in a child of the API process,
which wakes them at each commit, hears their live messages, restarts the child when it dies,
and takes it down with it."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhirhub.core.hub import Hub, build_hub
from fhirhub.core.settings import Settings
from fhirhub.core.worker_process import WorkerProcess, wanted
from fhirhub.sdk import Consumer, Schedule, hookimpl
from tests.conftest import LiveServer
from tests.core.fhir_samples import patient
from tests.plugins.vitals.conftest import as_
from tests.plugins.vitals.test_live_stream import first_alert, write_high_set
from tests.serving import cmdline, descendants, running, served_app


class Split:
    """A plugin with a consumer for each process, a companion and a schedule."""

    PLUGIN_NAME = "split"

    def __init__(self) -> None:
        self.light: list[str] = []
        self.heavy: list[str] = []
        self.companion_log: list[str] = []
        self.scheduled = threading.Event()

    def _companion(self) -> Any:
        self.companion_log.append("start")
        return lambda: self.companion_log.append("stop")

    def _heavy(self, versions: Any) -> None:
        assert self.companion_log == ["start"], "the companion starts before any delivery"
        self.heavy += [v.resource_id for v in versions]

    @hookimpl
    def register_consumers(self, hub: Any) -> list[Consumer]:
        return [
            Consumer("light", lambda vs: self.light.extend(v.resource_id for v in vs)),
            Consumer("heavy", self._heavy, worker_process=True, companion=self._companion),
        ]

    @hookimpl
    def register_schedules(self, hub: Any) -> list[Schedule]:
        return [Schedule("split-tick", 0.05, lambda _hub: self.scheduled.set())]


def _create(hub: Hub, mrn: str) -> str:
    with hub.store.unit_of_work() as uow:
        uow.put("Patient", mrn, patient(mrn=mrn))
    return mrn


def test_placement_splits_the_consumers_between_the_processes(
    sqlite_url: str, tmp_path: Path
) -> None:
    settings = Settings(db=sqlite_url, data_dir=tmp_path, listeners=False, plugins="-mpi")
    plugin = Split()
    api = build_hub(settings, extra_plugins=[plugin])
    worker = build_hub(settings, extra_plugins=[plugin])
    assert api.dispatcher is not None and worker.dispatcher is not None
    try:
        api.dispatcher.placement = "api"
        api.dispatcher.start()
        assert "light" in api.dispatcher.consumers and "heavy" not in api.dispatcher.consumers
        assert plugin.companion_log == []  # the heavy consumer's companion runs beside it
        assert plugin.scheduled.wait(5)  # schedules stay in the API process
        # Written before the worker process serves the heavy consumer: it still gets it (its
        # cursor started at the head of the log when the API process started).
        first = _create(api, "W-1")
        assert api.dispatcher.wait_idle(10)
        assert first in plugin.light and plugin.heavy == []

        worker.dispatcher.placement = "worker"
        plugin.scheduled.clear()
        worker.dispatcher.start()
        assert "heavy" in worker.dispatcher.consumers
        assert not {"light", "audit", "mpi"} & set(worker.dispatcher.consumers)
        assert all(c.worker_process for c in worker.dispatcher.consumers.values())
        assert worker.dispatcher.schedules == []
        second = _create(api, "W-2")
        assert worker.dispatcher.wait_idle(10)
        assert plugin.heavy == [first, second]
        assert plugin.light.count(second) <= 1 and plugin.heavy.count(first) == 1
        worker.dispatcher.stop()
        assert plugin.companion_log == ["start", "stop"]
    finally:
        worker.close()
        api.close()


def test_auto_starts_a_worker_for_one_api_process_on_several_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert wanted(Settings(worker_process="auto"))
    assert not wanted(Settings(worker_process="auto"), api_processes=4)
    assert not wanted(Settings(worker_process="off"))
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert not wanted(Settings(worker_process="auto"))
    assert wanted(Settings(worker_process="on"))


@pytest.fixture
def served_with_worker(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Hub]]:
    """The vitals tests' hub (two tenants, callers named by a header), served by uvicorn with
    a worker process that scores the vitals."""
    from fhirhub.core.http.app import create_app
    from tests.plugins.vitals.conftest import HeaderAuthenticator
    from tests.tenants import add_tenants

    monkeypatch.setenv("FHIRHUB_VITALS_ESCALATION_CHECK_SECONDS", "3600")
    settings = Settings(
        db=sqlite_url, data_dir=tmp_path, auth="on", listeners=False, plugins="-mpi"
    )
    hub = build_hub(settings, extra_plugins=[HeaderAuthenticator()])
    add_tenants(hub, "org-a", "org-b")
    with served_app(create_app(hub=hub, worker_process=True), join_s=30) as base:
        yield base, hub
    hub.close()


@pytest.mark.slow
def test_scores_in_the_worker_reach_each_tenants_dashboard_and_survive_its_death(
    served_with_worker: tuple[str, Hub],
) -> None:
    base, hub = served_with_worker
    assert hub.dispatcher is not None and "vitals-scoring" not in hub.dispatcher.consumers
    worker = hub.link
    assert isinstance(worker, WorkerProcess) and worker.alive
    patients: dict[str, str] = {}

    def write_both() -> None:
        patients["a"] = write_high_set(f"{base}/fhir", as_("nurse-a"))
        time.sleep(0.5)  # org A's alert goes out first
        patients["b"] = write_high_set(f"{base}/fhir", as_("nurse-b"))

    # Scored in the worker, relayed to this process's dashboards: org B's hears its own only.
    event = first_alert(base, as_("nurse-b"), write_both)
    assert event["patient"] == patients["b"]

    # The worker dies: /healthz says so until it is back, and nothing written meanwhile is lost.
    old_pid = worker.pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while worker.alive and worker.pid == old_pid:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    health = httpx.get(f"{base}/healthz", timeout=5)
    if worker.pid == old_pid:  # (not restarted yet: it pauses first)
        assert health.status_code == 503
        assert health.json()["checks"]["worker-process"].startswith("failing")
    event = first_alert(
        base,
        as_("nurse-a"),
        lambda: patients.update(c=write_high_set(f"{base}/fhir", as_("nurse-a"))),
        timeout=60,
    )
    assert event["patient"] == patients["c"]
    assert worker.alive and worker.pid != old_pid
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200


@pytest.mark.slow
def test_the_worker_ends_with_a_killed_api_process(sqlite_url: str, tmp_path: Path) -> None:
    server = LiveServer(sqlite_url, tmp_path, env={"FHIRHUB_WORKER_PROCESS": "on"}).start()
    assert server.process is not None
    children = descendants(server.process.pid)
    workers = [pid for pid in children if b"worker_process" in cmdline(pid)]
    assert len(workers) == 1, children
    server.kill()
    deadline = time.monotonic() + 30
    while running(workers[0]):
        assert time.monotonic() < deadline, "the worker process outlived the API process"
        time.sleep(0.05)
