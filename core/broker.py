"""The API side of Celery: the app object used to send deliveries and tasks to workers.

Used only when ``FHIRHUB_BROKER`` names a broker (``redis://...`` or ``amqp://...``). The
workers' side (the task functions, each worker's own hub) is :mod:`fhirhub.core.celery_app`,
which workers load with ``celery -A fhirhub.core.celery_app worker``; senders address its
tasks by name, so this module needs none of the worker's code.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING

from celery import Celery

if TYPE_CHECKING:
    from fhirhub.core.hub import Hub

DELIVERY_TIMEOUT_S = 120


def _backend_for(broker: str) -> str:
    return broker if broker.startswith("redis") else "rpc://"


@cache
def make_celery(broker: str, queue: str) -> Celery:
    celery = Celery("fhirhub", broker=broker, backend=_backend_for(broker))
    celery.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=queue,
        task_acks_late=True,  # a worker that dies mid-task leaves it for another: at least once
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
    )
    return celery


def broker_delivery(hub: Hub) -> Callable[[str, int], None] | None:
    """A function delivering (consumer, seq) through Celery, or None without a broker."""
    if not hub.settings.broker:
        return None
    celery = make_celery(hub.settings.broker, hub.settings.broker_queue)

    def deliver(consumer: str, seq: int) -> None:
        result = celery.send_task("fhirhub.deliver", args=[consumer, seq])
        result.get(timeout=DELIVERY_TIMEOUT_S)

    return deliver
