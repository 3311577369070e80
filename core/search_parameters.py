"""Run-time SearchParameters: a built-in plugin.

A SearchParameter resource written through the API is validated before the write (its
expression must compile), then, once committed, registered in the search registry and its
base types re-indexed by an indexing job on the dispatcher (never on the writer's thread).
Searches by the new code work once that job has finished. At start-up every stored
SearchParameter is registered again.

With several API processes only the process that delivers to this plugin re-indexes; the
others register the parameter at their next start (a known limit of this first version).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from sqlalchemy import select

from fhirhub.core.hookspecs import hookimpl
from fhirhub.fhir_store.schema import resource_current
from fhirhub.fhir_store.search.parameters import SearchParameterRegistry, default_registry

log = logging.getLogger("fhirhub.search_parameters")


@hookimpl
def resource_before_write(resource: dict[str, Any], context: Any) -> None:
    if context.resource_type == "SearchParameter":
        # A scratch registry: compiles the expression and raises a 400 if it cannot.
        scratch: SearchParameterRegistry = default_registry()
        scratch.add(resource)


@hookimpl
def startup(hub: Any) -> None:
    with hub.store.read() as conn:
        rows = conn.execute(
            select(resource_current.c.content).where(
                resource_current.c.resource_type == "SearchParameter",
                resource_current.c.deleted.is_(False),
            )
        ).all()
    for (content,) in rows:
        try:
            hub.store.registry.add(orjson.loads(content))
        except Exception as exc:
            log.error("Stored SearchParameter could not be registered: %s", exc)


@hookimpl
def resource_committed(event: Any, hub: Any) -> None:
    if event.resource_type != "SearchParameter" or event.deleted or event.content is None:
        return
    definition = hub.store.registry.add(orjson.loads(event.content))
    bases = [b for b in definition.base if b not in ("Resource", "DomainResource")] or None
    with hub.store.unit_of_work() as uow:
        count = hub.store.indexer.reindex(uow.conn, bases, [definition.code])
    log.info("SearchParameter %s active on %s: %d resources indexed", definition.code, bases, count)
