"""Background tasks in-process (no broker): submit returns a handle whose result is the task's
return value; a failing task raises through ``result``; unknown names fail at submit time.
(The Celery path is tested with real Redis and RabbitMQ workers in test_celery.py.)"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from fhirhub.core.hub import build_hub
from fhirhub.core.settings import Settings
from fhirhub.sdk import hookimpl, search


class Jobs:
    PLUGIN_NAME = "jobs"

    def __init__(self) -> None:
        self.threads: list[str] = []

    @hookimpl
    def register_tasks(self, hub: Any) -> dict[str, Any]:
        def add(a: int, b: int) -> int:
            self.threads.append(threading.current_thread().name)
            return a + b

        def fail() -> None:
            raise RuntimeError("the lab system is down")

        def store(family: str) -> str:
            from fhirhub.sdk import create

            return str(create(hub, {"resourceType": "Patient", "name": [{"family": family}]})["id"])

        return {"jobs.add": add, "jobs.fail": fail, "jobs.store": store}


@pytest.fixture
def jobs_hub(tmp_path: Path) -> Any:
    jobs = Jobs()
    settings = Settings(db=f"sqlite:///{tmp_path / 'hub.db'}", data_dir=tmp_path, listeners=False)
    hub = build_hub(settings, extra_plugins=[jobs])
    yield hub, jobs
    hub.close()


def test_task_runs_on_a_pool_thread_and_returns_its_value(jobs_hub: Any) -> None:
    hub, jobs = jobs_hub
    assert hub.tasks.submit("jobs.add", 2, 3).result(timeout=5) == 5
    assert jobs.threads and jobs.threads[0].startswith("fhirhub-task")


def test_task_writes_through_the_store(jobs_hub: Any) -> None:
    hub, _ = jobs_hub
    patient_id = hub.tasks.submit("jobs.store", "Tasker").result(timeout=5)
    found = search(hub, "Patient", {"family": "Tasker"})
    assert [p["id"] for p in found] == [patient_id]


def test_failing_task_raises_through_result(jobs_hub: Any) -> None:
    hub, _ = jobs_hub
    with pytest.raises(RuntimeError, match="lab system is down"):
        hub.tasks.submit("jobs.fail").result(timeout=5)


def test_unknown_task_is_refused_at_submit(jobs_hub: Any) -> None:
    hub, _ = jobs_hub
    with pytest.raises(KeyError, match="jobs.missing"):
        hub.tasks.submit("jobs.missing")
