"""The vitals plugin of one hub: its settings, tables and caches."""

from __future__ import annotations

import threading
from collections import OrderedDict

from fhirhub.plugins.vitals.settings import PLUGIN_NAME, VitalsSettings
from fhirhub.plugins.vitals.state import metadata
from fhirhub.sdk import Hub, HubLocal, PluginDatabase, plugin_settings


class Lru:
    """A small thread-safe LRU map (patient -> SpO2 scale, encounter -> ward, ...)."""

    def __init__(self, size: int = 20000) -> None:
        self.size = size
        self._data: OrderedDict[tuple[str, str], object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> object | None:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        return None

    def put(self, key: tuple[str, str], value: object) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def drop(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class VitalsService:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.settings: VitalsSettings = plugin_settings(hub, PLUGIN_NAME, VitalsSettings)
        self.db = PluginDatabase(hub, metadata)
        #: (tenant, patient) -> whether SpO2 scale 2 applies; dropped when a Condition or Goal
        #: of the patient is committed (the consumer sees them in log order).
        self.scale2 = Lru()
        #: (tenant, encounter or patient) -> ward / location display; (tenant, patient) -> name.
        self.places = Lru()
        self.names = Lru()
        #: Whether a set waits in ``vitals_pending`` (None: not looked yet).
        self.has_pending: bool | None = None
        #: Whether the last batch scored several sets (a steady feed: the next one lingers).
        self.steady = False

    def linger_s(self) -> float:
        """The consumer's ``linger_s``: ``batch_pause_ms`` after a batch that scored several
        sets, so a steady feed is scored many patients per batch; 0 otherwise, so a lone set
        (a nurse at one bedside, the first after a quiet spell) is scored at once, and so is
        the set after it."""
        return self.settings.batch_pause_ms / 1000.0 if self.steady else 0.0


_services: HubLocal[VitalsService] = HubLocal("vitals.service")
_settings: HubLocal[VitalsSettings] = HubLocal("vitals.settings")


def settings_of(hub: Hub) -> VitalsSettings:
    """The settings alone: what the write path needs, without opening the plugin's tables
    (creating them inside a writer's transaction would wait for that writer's own lock)."""
    return _settings.setdefault(hub, lambda: plugin_settings(hub, PLUGIN_NAME, VitalsSettings))


def service_of(hub: Hub) -> VitalsService:
    return _services.setdefault(hub, lambda: VitalsService(hub))
