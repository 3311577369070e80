"""The adapter as the running hub holds it: settings, the source, syncs one at a time."""

from __future__ import annotations

import logging
import threading
from typing import Any

from fhirhub.adapters.oscar.settings import OscarSettings, load
from fhirhub.adapters.oscar.sources import Source
from fhirhub.adapters.oscar.state import SyncState
from fhirhub.adapters.oscar.sync import OscarSync, SyncBusy, SyncReport
from fhirhub.sdk import Hub, HubLocal

log = logging.getLogger("fhirhub.oscar")


def build_source(settings: OscarSettings) -> Source:
    """The source ``settings`` configure (see :attr:`OscarSettings.source_kind`)."""
    kind = settings.source_kind
    if kind == "database":
        from fhirhub.adapters.oscar.sources.database import DatabaseSource

        return DatabaseSource(settings.database_url, timeout_s=settings.timeout_s)
    if kind == "rest":
        from fhirhub.adapters.oscar.sources.rest import RestSource

        return RestSource(settings)
    if kind == "soap":
        from fhirhub.adapters.oscar.sources.soap import SoapSource

        return SoapSource(settings)
    if kind == "demo":
        from fhirhub.adapters.oscar.sample_clinic import generate
        from fhirhub.adapters.oscar.sources.rows import RowsSource

        return RowsSource(generate(24, seed=2025, per_patient=20), kind="demo")
    raise ValueError("no OSCAR source is configured ([plugin.oscar] database, url or source)")


class OscarRuntime:
    """One configured OSCAR for one hub."""

    def __init__(self, hub: Hub, settings: OscarSettings) -> None:
        self.hub = hub
        self.settings = settings
        self.state = SyncState(hub, settings.instance_name)
        self._source: Source | None = None
        self._lock = threading.Lock()
        self.last_report: SyncReport | None = None

    @property
    def source(self) -> Source:
        with self._lock:
            if self._source is None:
                self._source = build_source(self.settings)
            return self._source

    def sync(self, *, full: bool = False, since: str | None = None) -> SyncReport:
        report = OscarSync(self.hub, self.settings, self.source).run(full=full, since=since)
        self.last_report = report
        return report

    def sync_in_background(self, *, full: bool = False) -> bool:
        """Start a sync on a thread; False when one is already running."""

        def work() -> None:
            try:
                self.sync(full=full)
            except SyncBusy:
                pass
            except Exception:  # reported in the run table by the sync itself
                log.exception("OSCAR background sync failed")

        from fhirhub.adapters.oscar.sync import _lock

        if _lock(self.hub).locked():
            return False
        threading.Thread(target=work, name="oscar-sync", daemon=True).start()
        return True

    def status(self) -> dict[str, Any]:
        """Cursors, counts, the last runs and errors, dead letters and write-backs."""
        runs = self.state.runs(10)
        last_error = next((r["error"] for r in runs if r["error"]), None)
        return {
            "configured": True,
            "source": self.settings.source_kind,
            "instance": self.settings.instance_name,
            "tenant": self.settings.tenant,
            "interval_s": self.settings.interval_s,
            "cursors": self.state.cursors(),
            "runs": runs,
            "last_error": last_error,
            "dead_letters": [vars(d) for d in self.state.dead_letters(limit=100)],
            "dead_letter_count": self.state.dead_letter_count(),
            "writeback": self.state.outbox(50),
        }

    def close(self) -> None:
        with self._lock:
            if self._source is not None:
                self._source.close()
                self._source = None


_RUNTIME: HubLocal[OscarRuntime] = HubLocal("oscar.runtime")
_GUARD = threading.Lock()


def runtime(hub: Hub) -> OscarRuntime | None:
    """The hub's OSCAR runtime, or None when no source is configured."""
    with _GUARD:
        current = _RUNTIME.get(hub)
        if current is not None:
            return current
        settings = load(hub)
        if settings.source_kind is None:
            return None
        current = OscarRuntime(hub, settings)
        _RUNTIME.set(hub, current)
        return current


def drop_runtime(hub: Hub) -> None:
    with _GUARD:
        current = _RUNTIME.pop(hub)
    if current is not None:
        current.close()
