"""Background tasks registered by plugins (``register_tasks``).

In-process by default (a small thread pool); the Celery path is used when ``FHIRHUB_BROKER`` is
set (see ``fhirhub.core.celery_app``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fhirhub.core.hub import Hub

log = logging.getLogger("fhirhub.tasks")


class TaskRunner:
    def __init__(self, hub: Hub, tasks: dict[str, Callable[..., Any]]) -> None:
        self.hub = hub
        self.tasks = dict(tasks)
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, name: str, *args: Any) -> Future[Any]:
        if name not in self.tasks:
            raise KeyError(f"No task named {name!r} is registered")
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="fhirhub-task")
        return self._pool.submit(self.tasks[name], *args)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
