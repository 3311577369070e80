"""The ``Hub``: what the core and every plugin share at run time.

It holds the settings, the store, the plugin manager, the operation registry, the task runner
and the dispatcher. Adapters and plugins receive it in hooks and use it through
:mod:`fhirhub.sdk` instead of talking to the hub over HTTP (one write path for every source).

What a plugin keeps per hub (a listener, a writer thread) lives in a :class:`HubLocal` the
plugin owns, not in an untyped dictionary on the hub: tests and embedders build several hubs
in one process, and each must have its own.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pluggy

from fhirhub.core.operations import OperationRegistry
from fhirhub.core.settings import Settings
from fhirhub.fhir_store.database import make_engine
from fhirhub.fhir_store.search.terminology import (
    TokenCodes,
    TokenModifier,
    UnitConversion,
)
from fhirhub.fhir_store.store import FhirStore, UnitOfWork
from fhirhub.fhir_store.versions import StoredVersion

if TYPE_CHECKING:
    from fhirhub.core.dispatcher import Dispatcher
    from fhirhub.core.tasks import TaskRunner
    from fhirhub.core.worker_process import Link, WorkerProcess

log = logging.getLogger("fhirhub")


@dataclass(eq=False)
class Hub:
    settings: Settings
    store: FhirStore
    plugins: pluggy.PluginManager
    operations: OperationRegistry = field(default_factory=OperationRegistry)
    tasks: TaskRunner | None = None
    #: Delivers committed versions to consumers; created by :func:`build_hub`, started with
    #: the app (or by a plugin's own tests through ``hub.dispatcher.start()``).
    dispatcher: Dispatcher | None = None
    #: The socket to the other process of a hub served with a worker process
    #: (:mod:`fhirhub.core.worker_process`): commits wake the consumers there.
    link: Link | WorkerProcess | None = None

    @property
    def hook(self) -> Any:
        return self.plugins.hook

    @property
    def base_url(self) -> str:
        return self.settings.base_url.rstrip("/")

    def close(self) -> None:
        """Stop background work and release the database."""
        if self.dispatcher is not None:
            self.dispatcher.stop()
        if self.tasks is not None:
            self.tasks.close()
        self.store.engine.dispose()


class _HookedStore:
    """The store's :class:`~fhirhub.fhir_store.store.StoreHooks`, answered by the hook
    catalogue: ``before_commit`` and ``after_commit`` go through pluggy like every hook."""

    def __init__(self, hub: Hub) -> None:
        self._hub = weakref.ref(hub)

    def before_commit(self, unit: UnitOfWork) -> None:
        hub = self._hub()
        if hub is None:
            return
        from fhirhub.core.transaction import Transaction

        hub.hook.before_commit(transaction=Transaction(hub, unit))

    def after_commit(self, versions: list[StoredVersion]) -> None:
        hub = self._hub()
        if hub is not None:
            hub.hook.after_commit(versions=versions, hub=hub)


class _HookedTokenModifiers:
    """The registry's terminology resolver (``:in``, ``:below``...), answered by the
    ``search_token_codes`` hook (firstresult): the store asks, a terminology plugin answers."""

    def __init__(self, hub: Hub) -> None:
        self._hub = weakref.ref(hub)

    def __call__(self, request: TokenModifier) -> TokenCodes | None:
        hub = self._hub()
        if hub is None:
            return None
        answer: TokenCodes | None = hub.hook.search_token_codes(request=request, hub=hub)
        return answer


class _HookedQuantityUnits:
    """The registry's UCUM converter for quantity search (``search_quantity_units``)."""

    def __init__(self, hub: Hub) -> None:
        self._hub = weakref.ref(hub)

    def __call__(self, code: str, stored: Sequence[str]) -> Mapping[str, UnitConversion]:
        hub = self._hub()
        answer = (
            None
            if hub is None
            else hub.hook.search_quantity_units(code=code, stored=list(stored), hub=hub)
        )
        return answer if answer is not None else {code: UnitConversion(1.0)}


_T = TypeVar("_T")


class HubLocal(Generic[_T]):
    """A value a plugin keeps per hub (its listener, its writer thread), typed and private
    to the plugin::

        _server: HubLocal[MllpServer] = HubLocal("hl7.mllp")

        @hookimpl
        def startup(hub):
            _server.set(hub, MllpServer(hub))

    Several hubs in one process (tests, embedding) each get their own value; a hub that is
    garbage-collected takes its values with it.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._values: weakref.WeakKeyDictionary[Hub, _T] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, hub: Hub) -> _T | None:
        return self._values.get(hub)

    def set(self, hub: Hub, value: _T) -> _T:
        self._values[hub] = value
        return value

    def pop(self, hub: Hub) -> _T | None:
        return self._values.pop(hub, None)

    def setdefault(self, hub: Hub, factory: Callable[[], _T]) -> _T:
        """The hub's value, created by ``factory`` (once, under a lock) when there is none."""
        value = self._values.get(hub)
        if value is not None:
            return value
        with self._lock:
            value = self._values.get(hub)
            if value is None:
                value = self._values[hub] = factory()
            return value


def content_cipher(settings: Settings, engine: Any) -> Any:
    """The encryption-at-rest cipher when ``FHIRHUB_ENCRYPT_AT_REST`` is on, else None."""
    if not settings.encrypt_at_rest:
        return None
    from pathlib import Path

    from fhirhub.fhir_store.encryption import ContentCipher, load_master_key

    path = Path(settings.encryption_key_file or settings.data_dir / "keys" / "content-master.key")
    return ContentCipher(engine, load_master_key(path))


def _pool_arguments(settings: Settings) -> dict[str, int]:
    """The connection pool's bounds: PostgreSQL's ``max_connections`` is shared by every API
    process and worker of a deployment, so each process's share is a setting (SQLite has no
    server-side limit and keeps its own pooling)."""
    if settings.database_url.startswith("sqlite"):
        return {}
    return {"pool_size": settings.db_pool_size, "max_overflow": 20}


def build_hub(
    settings: Settings,
    *,
    plugin_manager: pluggy.PluginManager | None = None,
    extra_plugins: list[Any] | None = None,
) -> Hub:
    """Create the store (schema upgraded), load plugins and collect what they register.

    ``extra_plugins`` registers plugin objects directly (tests, embedding), in addition to the
    built-in and entry-point plugins.
    """
    from fhirhub.core.dispatcher import Dispatcher
    from fhirhub.core.plugins import activate_plugins, make_plugin_manager

    engine = make_engine(settings.database_url, **_pool_arguments(settings))
    store = FhirStore(engine, cipher=content_cipher(settings, engine))
    store.create_schema()
    pm = plugin_manager or make_plugin_manager(settings, extra_plugins=extra_plugins)
    hub = Hub(settings=settings, store=store, plugins=pm)
    store.hooks = _HookedStore(hub)
    activate_plugins(hub)
    if pm.hook.search_token_codes.get_hookimpls():
        store.registry.token_modifiers = _HookedTokenModifiers(hub)
    if pm.hook.search_quantity_units.get_hookimpls():
        store.registry.quantity_units = _HookedQuantityUnits(hub)
    hub.dispatcher = Dispatcher(hub)
    return hub
