"""Celery integration: plugin tasks and ``resource_committed`` deliveries on workers.

Used only when ``FHIRHUB_BROKER`` names a broker (``redis://...`` or ``amqp://...``). Start
workers with the same environment as the API (``FHIRHUB_DB`` and ``FHIRHUB_BROKER``)::

    celery -A fhirhub.core.celery_app worker --pool=solo -Q fhirhub

A worker builds its own hub from the settings (same database, same plugins) and runs the
plugin's function there. Results travel back through the Redis result backend, or RPC replies
on RabbitMQ, so the API side can wait for a delivery (which keeps per-plugin order).
"""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING, Any

from fhirhub.core.broker import make_celery

if TYPE_CHECKING:
    from fhirhub.core.hub import Hub


@cache
def _worker_hub() -> Hub:
    """The hub of this worker process (built once, from the environment)."""
    from fhirhub.core.hub import build_hub
    from fhirhub.core.search_parameters import load_stored
    from fhirhub.core.settings import load_settings

    hub = build_hub(load_settings(listeners=False))
    # Writes made on the worker must be indexed by run-time SearchParameters too.
    load_stored(hub)
    return hub


def _deliver(consumer: str, seq: int) -> bool:
    from fhirhub.core.dispatcher import read_versions

    hub = _worker_hub()
    with hub.store.read() as conn:
        versions = read_versions(conn, seq - 1, limit=1)
    if not versions or versions[0].seq != seq:
        return False
    for impl in hub.plugins.hook.resource_committed.get_hookimpls():
        if impl.plugin_name == consumer:
            impl.function(event=versions[0], hub=hub)
            return True
    raise LookupError(f"No resource_committed hook of plugin {consumer!r} on this worker")


def _run_task(name: str, args: list[Any]) -> Any:
    hub = _worker_hub()
    assert hub.tasks is not None
    return hub.tasks.tasks[name](*args)


#: The app the ``celery -A fhirhub.core.celery_app worker`` command line finds.
app = make_celery(
    os.environ.get("FHIRHUB_BROKER", "memory://"), os.environ.get("FHIRHUB_BROKER_QUEUE", "fhirhub")
)
app.task(name="fhirhub.deliver")(_deliver)
app.task(name="fhirhub.run_task")(_run_task)
