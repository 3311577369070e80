"""The ``Hub``: what the core and every plugin share at run time.

It holds the settings, the store, the plugin manager, the operation registry and the task
runner. Adapters and plugins receive it in hooks and use it instead of talking to the hub over
HTTP (one write path for every source).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

from fhirhub.core.operations import OperationRegistry
from fhirhub.core.settings import Settings
from fhirhub.fhir_store.database import make_engine
from fhirhub.fhir_store.store import FhirStore, UnitOfWork

if TYPE_CHECKING:
    from fhirhub.core.tasks import TaskRunner

log = logging.getLogger("fhirhub")


@dataclass
class WriteContext:
    """Passed to ``resource_before_write``: which interaction is writing what, and where."""

    hub: Hub
    interaction: str  # create | update | patch | transaction-entry
    resource_type: str
    resource_id: str
    unit_of_work: UnitOfWork
    previous: Any = None  # the StoredVersion being replaced, if any


@dataclass
class Hub:
    settings: Settings
    store: FhirStore
    plugins: pluggy.PluginManager
    operations: OperationRegistry = field(default_factory=OperationRegistry)
    tasks: TaskRunner | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def hook(self) -> Any:
        return self.plugins.hook

    @property
    def base_url(self) -> str:
        return self.settings.base_url.rstrip("/")

    @property
    def dispatcher(self) -> Any:
        """The running :class:`fhirhub.core.dispatcher.Dispatcher`, if the app started one."""
        return self.extra.get("dispatcher")

    def close(self) -> None:
        """Stop background work and release the database."""
        dispatcher = self.extra.get("dispatcher")
        if dispatcher is not None:
            dispatcher.stop()
        if self.tasks is not None:
            self.tasks.close()
        self.store.engine.dispose()


def content_cipher(settings: Settings, engine: Any) -> Any:
    """The encryption-at-rest cipher when ``FHIRHUB_ENCRYPT_AT_REST`` is on, else None."""
    if not settings.encrypt_at_rest:
        return None
    from pathlib import Path

    from fhirhub.fhir_store.encryption import ContentCipher, load_master_key

    path = Path(settings.encryption_key_file or settings.data_dir / "keys" / "content-master.key")
    return ContentCipher(engine, load_master_key(path))


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
    from fhirhub.core.plugins import activate_plugins, make_plugin_manager

    engine = make_engine(settings.database_url)
    store = FhirStore(engine, cipher=content_cipher(settings, engine))
    store.create_schema()
    pm = plugin_manager or make_plugin_manager(settings, extra_plugins=extra_plugins)
    hub = Hub(settings=settings, store=store, plugins=pm)
    activate_plugins(hub)
    return hub
