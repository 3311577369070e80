"""In-process FHIR interactions for plugins: one-shot helpers and :func:`transaction`.

Each helper runs the same interaction as the REST API (validation, access control with the
caller's :func:`~fhirhub.core.access.current_access`, ``resource_before_write`` hooks, reference
checks, versions, indexes, ``before_commit``/``after_commit`` and the consumers of committed
versions), without HTTP. Several writes that must commit together go in one
:func:`transaction`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import orjson

from fhirhub.core.hub import Hub, HubLocal
from fhirhub.core.interactions.bundle import process_bundle as _process_bundle
from fhirhub.core.interactions.write import WriteContext
from fhirhub.core.settings import PluginSettings, Settings
from fhirhub.core.settings import plugin_settings as _plugin_settings
from fhirhub.core.transaction import Transaction, WriteResult
from fhirhub.fhir_store.errors import FhirError
from fhirhub.fhir_store.store import UnitOfWork


@contextmanager
def transaction(hub: Hub) -> Iterator[Transaction]:
    """A unit of work: every write inside the block commits together when it ends normally,
    nothing of it when it raises. ``before_commit`` hooks see it before it commits."""
    with hub.store.unit_of_work() as unit:
        yield Transaction(hub, unit)


def writing_transaction(context: WriteContext) -> Transaction:
    """The unit of work a ``resource_before_write`` hook runs in, as a :class:`Transaction`:
    reads see the unit's own writes so far, with the caller's access (a hook that checks the
    resource being written against others: a report against its findings). Do not commit it
    yourself: it commits (or rolls back) with the interaction that called the hook."""
    return Transaction(context.hub, context.unit_of_work)


@contextmanager
def snapshot(hub: Hub) -> Iterator[Transaction]:
    """A read-only :class:`Transaction` over one consistent snapshot of the store (several
    reads that must agree with each other, without taking the write lock)."""
    with hub.store.read() as conn:
        yield Transaction(hub, UnitOfWork(hub.store, conn), read_only=True)


def read(hub: Hub, resource_type: str, resource_id: str) -> dict[str, Any]:
    """The current version of a resource; raises ``FhirError`` 404 (unknown, or not visible
    to the caller) or 410 (deleted)."""
    from fhirhub.core.interactions import read as reads

    with hub.store.read() as conn:
        version = reads.read(conn, resource_type, resource_id)
    content: dict[str, Any] = orjson.loads(version.content or b"{}")
    return content


def search(
    hub: Hub,
    resource_type: str,
    params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """The first page of matches (``_count``, ``_sort``, ``_offset`` apply) as dicts, with
    the caller's access. Repeat a parameter by passing pairs: ``[("code", a), ("code", b)]``."""
    from fhirhub.core.interactions.search import search_resources

    pairs = list(params.items()) if isinstance(params, Mapping) else list(params or [])
    with hub.store.read() as conn:
        return search_resources(hub, conn, resource_type, pairs)


#: Parameters :func:`search_all` sets itself.
_PAGER_PARAMS = frozenset({"_sort", "_offset", "_count", "_after"})


def search_all(
    hub: Hub,
    resource_type: str,
    params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every match, not just :func:`search`'s first page: pages of the hub's largest size,
    sorted by id, one read each, until a page comes back short. A plugin that must see all
    (every Goal of a hundred patients) would otherwise miss what lies past the first page.
    The search's deepest ``_offset`` (100,000) bounds it: narrow criteria that match more.
    ``_sort``, ``_offset``, ``_count`` and ``_after`` are the pager's own: passing one is a
    ``ValueError``."""
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params or [])
    given = {name.split(":", 1)[0] for name, _ in pairs} & _PAGER_PARAMS
    if given:
        raise ValueError(f"search_all pages by itself; do not pass {', '.join(sorted(given))}")
    page_size = hub.settings.max_page_size
    offset = 0
    while True:
        page = search(
            hub,
            resource_type,
            [*pairs, ("_sort", "_id"), ("_count", str(page_size)), ("_offset", str(offset))],
        )
        yield from page
        if len(page) < page_size:
            return
        offset += len(page)


def match(hub: Hub, resource_type: str, criteria: str | Sequence[tuple[str, str]]) -> list[str]:
    """Ids matching conditional criteria (at most two: none, one or several), from the
    indexes only, with the caller's access."""
    with transaction(hub) as tx:
        return tx.match(resource_type, criteria)


#: The search takes at most 100 comma-separated values per parameter.
_IDS_PER_QUERY = 100


def matching(
    hub: Hub, resource_type: str, criteria: str | Sequence[tuple[str, str]], ids: Sequence[str]
) -> set[str]:
    """Which of ``ids`` match search ``criteria`` now, with the caller's access: the REST
    search code (chains, ``_has``, modifiers), strictly parsed (an unknown parameter or an
    unsupported modifier is a 400, never a silent match-everything), from the indexes only.
    Empty criteria (``""``) match every visible id. With no ``ids`` the criteria are only
    checked: what a plugin storing criteria (a Subscription) does before accepting them."""
    from fhirhub.core.access import current_access
    from fhirhub.core.interactions.checks import require_type
    from fhirhub.core.interactions.search import parse_query
    from fhirhub.fhir_store.search.query import matching_ids

    require_type(resource_type)
    params = parse_query(criteria) if isinstance(criteria, str) else list(criteria)
    wanted = list(dict.fromkeys(ids)) or ["-"]  # "-" is no id: the query still plans
    visibility = current_access().visibility("r")
    found: set[str] = set()
    with hub.store.read() as conn:
        for start in range(0, len(wanted), _IDS_PER_QUERY):
            chunk = wanted[start : start + _IDS_PER_QUERY]
            found.update(
                matching_ids(
                    conn,
                    hub.store.registry,
                    resource_type,
                    [*params, ("_id", ",".join(chunk))],
                    limit=len(chunk),
                    visibility=visibility,
                )
            )
    return found & set(ids)


#: A resource's index rows by table kind (``token``, ``reference``...): what the store
#: extracts from it for the search, see :func:`index_rows`.
IndexRows = dict[str, list[dict[str, Any]]]


def index_rows(
    hub: Hub, resource: dict[str, Any], params: Iterable[str] | None = None
) -> IndexRows:
    """The search index rows the store makes of ``resource`` (it needs ``resourceType`` and
    ``id``), of every parameter or only of ``params`` (the union of the ``params`` of the
    :class:`CriteriaMatcher` s to test): extract them once per version and test any number of
    matchers against them."""
    return hub.store.indexer.extractor.extract(resource, params)


class CriteriaMatcher:
    """Search criteria compiled to be tested in memory against one resource's index rows,
    with the SQL search's semantics (see :func:`criteria_matcher`)."""

    def __init__(self, resource_type: str, test: Any, params: frozenset[str]) -> None:
        self.resource_type = resource_type
        #: The search parameter codes whose index rows the test reads.
        self.params = params
        self._test = test

    def matches(self, resource_id: str, rows: IndexRows) -> bool:
        """Whether the resource with this id and these :func:`index_rows` matches. Access is
        not checked: the caller decides who may see the resource."""
        return bool(self._test(resource_id, rows))


def criteria_matcher(
    hub: Hub, resource_type: str, criteria: str | Sequence[tuple[str, str]]
) -> CriteriaMatcher | None:
    """``criteria`` compiled for in-memory tests when they are simple enough (tokens with
    ``:not``, plain references, number and quantity comparisons, ``:missing``, ``_id``);
    None when they need the SQL search (chains, ``_has``, strings, dates...): use
    :func:`matching` then. Empty criteria match everything."""
    from fhirhub.core.interactions.search import parse_query
    from fhirhub.fhir_store.search.in_memory import compile_criteria

    try:
        params = parse_query(criteria) if isinstance(criteria, str) else list(criteria)
    except FhirError:
        return None
    compiled = compile_criteria(hub.store.indexer.extractor, resource_type, params)
    if compiled is None:
        return None
    return CriteriaMatcher(resource_type, compiled.test, compiled.codes)


def create(
    hub: Hub, resource: dict[str, Any], *, if_none_exist: str | None = None
) -> dict[str, Any]:
    """Create a resource (server-assigned id) and return it as stored (with a matching
    ``if_none_exist``: the existing resource)."""
    with transaction(hub) as tx:
        result = tx.create(resource, if_none_exist=if_none_exist)
    return _stored(hub, result)


def update(hub: Hub, resource: dict[str, Any], *, if_match: str | None = None) -> dict[str, Any]:
    """Update (or create with its id) a resource and return it as stored. Creating with an id
    is for the system and callers that see every resource of the type: one confined to a
    tenant or a patient gets 405 for an id it cannot see (``docs/security.md``)."""
    with transaction(hub) as tx:
        result = tx.update(resource, if_match=if_match)
    return _stored(hub, result)


def delete(hub: Hub, resource_type: str, resource_id: str) -> None:
    """Delete a resource (a tombstone version; its history stays)."""
    with transaction(hub) as tx:
        tx.delete(resource_type, resource_id)


def process_bundle(hub: Hub, bundle: dict[str, Any]) -> dict[str, Any]:
    """Run a ``batch`` or ``transaction`` Bundle as ``POST [base]`` would and return the
    response Bundle."""
    response = _process_bundle(hub, bundle, base_url=hub.base_url)
    result: dict[str, Any] = orjson.loads(response)
    return result


def _stored(hub: Hub, result: WriteResult) -> dict[str, Any]:
    content = result.version.content
    if content is None:
        return read(hub, result.version.resource_type, result.version.resource_id)
    stored: dict[str, Any] = orjson.loads(content)
    return stored


def plugin_settings(
    hub: Hub | Settings, name: str, model: type[Any] | None = None, /, **flags: Any
) -> Any:
    """A plugin's settings, from the hub (or its :class:`Settings`). With ``model`` (a
    :class:`PluginSettings` subclass): an instance filled from ``flags`` >
    ``FHIRHUB_<NAME>_*`` environment variables > the ``[plugin.<name>]`` table of the TOML
    file > the class's defaults. Without: the raw TOML table as a dict."""
    settings = hub.settings if isinstance(hub, Hub) else hub
    if model is None:
        return dict(settings.plugin_config.get(name, {}))
    if not issubclass(model, PluginSettings):
        raise TypeError("plugin_settings needs a subclass of fhirhub.sdk.PluginSettings")
    if not isinstance(hub, Hub) or flags:
        return _plugin_settings(settings, name, model, **flags)
    # Read once per hub: building a settings model (environment, TOML table, validation)
    # costs ~100 µs, too much for a consumer asking once per committed version.
    cache = _SETTINGS.setdefault(hub, dict)
    found = cache.get((name, model))
    if found is None:
        found = cache[(name, model)] = _plugin_settings(settings, name, model)
    return found


#: Each hub's plugin settings, by (plugin name, model), as first read.
_SETTINGS: HubLocal[dict[tuple[str, type[Any]], Any]] = HubLocal("sdk.plugin_settings")
