"""A subscription's owner decides what ``$status``, ``$events`` and websocket binding tokens
show. It is cached only in the process serving the consumer, which sees every rewrite of the
Subscription; the API process beside a worker process reads it each time, so a rewritten
owner takes effect there at once."""

from __future__ import annotations

from sqlalchemy import insert, update

from fhirhub.core.hub import Hub
from fhirhub.plugins.subscriptions import model
from fhirhub.plugins.subscriptions.owners import access_to_json
from fhirhub.plugins.subscriptions.service import service_of
from fhirhub.sdk import system_for


def _set_owner(hub: Hub, tenant: str, first: bool) -> None:
    service = service_of(hub)
    access = access_to_json(system_for(tenant))
    with service.db.begin() as conn:
        if first:
            conn.execute(insert(model.owner).values(id="s1", access=access))
        else:
            conn.execute(update(model.owner).where(model.owner.c.id == "s1").values(access=access))


def test_the_owner_is_read_each_time_where_the_consumer_does_not_run(hub: Hub) -> None:
    service = service_of(hub)
    assert not service.serves_consumer  # (no dispatcher started: the consumer runs nowhere)
    _set_owner(hub, "org-a", first=True)
    assert service.owner("s1", "org-a").tenant == "org-a"
    _set_owner(hub, "org-b", first=False)  # rewritten by a write the worker would see
    assert service.owner("s1", "org-b").tenant == "org-b"


def test_the_process_serving_the_consumer_caches_it(hub: Hub) -> None:
    service = service_of(hub)
    service.serve_consumer(True)
    try:
        _set_owner(hub, "org-a", first=True)
        assert service.owner("s1", "org-a").tenant == "org-a"
        _set_owner(hub, "org-b", first=False)
        # Until its consumer applies the Subscription's new version (which drops the entry).
        assert service.owner("s1", "org-a").tenant == "org-a"
    finally:
        service.serve_consumer(False)
