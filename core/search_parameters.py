"""Run-time SearchParameters: a built-in plugin.

A SearchParameter resource written through the API is validated before the write (its
expression must compile). Once committed it is registered in the search registry and its base
types are re-indexed by the ``search-parameters.reindex`` task (``hub.tasks``: a pool thread,
or a Celery worker when a broker is configured). Searches by the new code are complete once
that job has finished (``hub.dispatcher.wait_idle()`` covers it). At start-up every stored
SearchParameter is registered again.

Registration happens in two places on purpose:

* an ``after_commit`` hook in the writing process registers the parameter right after commit, so the
  writes that follow are indexed by it at once (the registry lives in each process);
* the ``core-search-parameters`` consumer (SearchParameter versions only) registers it in the
  process holding the consumer (idempotent: the same url replaces the earlier definition) and
  runs the re-indexing job, at least once, as a task (on a Celery worker with a broker).

Limit of this first version: other API processes and Celery workers learn a new parameter at
their next start (or, for a worker, when it runs that parameter's re-indexing job).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from sqlalchemy import select

from fhirhub.core.consumers import Consumer, each_version
from fhirhub.core.hookspecs import hookimpl
from fhirhub.fhir_store.encryption import opened
from fhirhub.fhir_store.schema import resource_current
from fhirhub.fhir_store.search.parameters import SearchParameterRegistry, default_registry
from fhirhub.fhir_store.versions import StoredVersion

log = logging.getLogger("fhirhub.search_parameters")

TASK = "search-parameters.reindex"
REINDEX_TIMEOUT_S = 600.0
ABSTRACT = ("Resource", "DomainResource")


@hookimpl
def resource_before_write(resource: dict[str, Any], context: Any) -> None:
    if context.resource_type == "SearchParameter":
        # A scratch registry: compiles the expression and raises a 400 if it cannot.
        scratch: SearchParameterRegistry = default_registry()
        scratch.add(resource)


@hookimpl
def startup(hub: Any) -> None:
    load_stored(hub)


@hookimpl
def after_commit(versions: list[StoredVersion], hub: Any) -> None:
    """Register committed SearchParameters in this process (cheap: one expression compile,
    only for SearchParameter versions)."""
    for version in versions:
        if version.resource_type == "SearchParameter" and not version.deleted:
            _register(hub, version)


def load_stored(hub: Any) -> None:
    """Register every stored SearchParameter (API start-up, and each Celery worker's hub)."""
    with hub.store.read() as conn:
        rows = conn.execute(
            select(resource_current.c.content).where(
                resource_current.c.resource_type == "SearchParameter",
                resource_current.c.deleted.is_(False),
            )
        ).all()
    for (content,) in rows:
        try:
            hub.store.registry.add(orjson.loads(opened(hub.store.engine, content) or b"{}"))
        except Exception as exc:
            log.error("Stored SearchParameter could not be registered: %s", exc)


def _register(hub: Any, version: StoredVersion) -> None:
    try:
        hub.store.registry.add(orjson.loads(version.content or b"{}"))
    except Exception as exc:  # validated before the write; never break a commit
        log.error("SearchParameter %s not registered: %s", version.resource_id, exc)


@hookimpl
def register_tasks(hub: Any) -> dict[str, Any]:
    def reindex(resource_id: str) -> int:
        """Register the stored SearchParameter ``resource_id`` and index its base types."""
        from fhirhub.core.interactions.read import read as read_version
        from fhirhub.fhir_store.errors import FhirError

        try:
            with hub.store.read() as conn:
                stored = orjson.loads(
                    read_version(conn, "SearchParameter", resource_id).content or b"{}"
                )
        except FhirError as exc:
            if exc.status in (404, 410):  # deleted since: nothing to index (not an error)
                return 0
            raise
        definition = hub.store.registry.add(stored)
        bases = [b for b in definition.base if b not in ABSTRACT] or None
        with hub.store.unit_of_work() as uow:
            count: int = hub.store.indexer.reindex(uow.conn, bases, [definition.code])
        log.info(
            "SearchParameter %s active on %s: %d resources indexed", definition.code, bases, count
        )
        return count

    return {TASK: reindex}


@hookimpl
def register_consumers(hub: Any) -> list[Consumer]:
    """Re-index for each committed SearchParameter, reading only SearchParameter versions (the
    consumer of the same name once read every version of the log to find them)."""
    return [
        Consumer(
            "core-search-parameters",
            each_version(lambda version: _activate(hub, version)),
            types=frozenset({"SearchParameter"}),
            timeout_s=REINDEX_TIMEOUT_S,
        )
    ]


def _activate(hub: Any, version: StoredVersion) -> None:
    """Register a new SearchParameter here and index its base types as a task (on a Celery
    worker when a broker is configured). Waiting keeps at-least-once: a failed job is retried
    from this version."""
    if not version.deleted and version.content is not None:
        hub.store.registry.add(orjson.loads(version.content))
        hub.tasks.submit(TASK, version.resource_id).result(timeout=REINDEX_TIMEOUT_S)
