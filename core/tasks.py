"""Background tasks registered by plugins (``register_tasks``).

In-process by default (a small thread pool). When ``FHIRHUB_BROKER`` is set, tasks are sent to
Celery workers (:mod:`fhirhub.core.celery_app`), which run the same registered function.
Either way ``submit`` returns a :class:`TaskHandle` to wait on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fhirhub.core.hub import Hub

log = logging.getLogger("fhirhub.tasks")


@dataclass
class TaskHandle:
    """A submitted task: ``result(timeout)`` waits and returns its value (or raises)."""

    _future: Future[Any] | None = None
    _async_result: Any = None

    def result(self, timeout: float | None = None) -> Any:
        if self._future is not None:
            return self._future.result(timeout=timeout)
        return self._async_result.get(timeout=timeout)


class TaskRunner:
    def __init__(self, hub: Hub, tasks: dict[str, Callable[..., Any]]) -> None:
        self.hub = hub
        self.tasks = dict(tasks)
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, name: str, *args: Any) -> TaskHandle:
        if name not in self.tasks:
            raise KeyError(f"No task named {name!r} is registered")
        if self.hub.settings.broker:
            from fhirhub.core.broker import make_celery

            celery = make_celery(self.hub.settings.broker, self.hub.settings.broker_queue)
            return TaskHandle(
                _async_result=celery.send_task("fhirhub.run_task", args=[name, list(args)])
            )
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="fhirhub-task")
        return TaskHandle(_future=self._pool.submit(self._run, name, args))

    def _run(self, name: str, args: tuple[Any, ...]) -> Any:
        try:
            return self.tasks[name](*args)
        except Exception:
            log.exception("Task %s failed", name)
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
