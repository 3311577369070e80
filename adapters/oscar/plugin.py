"""The OSCAR EMR adapter as a built-in plugin (``oscar`` in DEFAULT_PLUGINS).

Without a source in ``[plugin.oscar]`` it loads and does nothing (no schedule, no consumer;
its page says it is not configured). Configured, it syncs every ``interval_s`` seconds
(a :class:`~fhirhub.sdk.Schedule`), sends Appointments and vital signs booked in fhirhub back
to OSCAR (a :class:`~fhirhub.sdk.Consumer` and a retry schedule), adds ``fhirhub oscar
sync|status`` and an admin page. See docs/oscar.md.
"""

from __future__ import annotations

import logging
from typing import Any

from fhirhub.sdk import Consumer, Hub, Schedule, hookimpl

log = logging.getLogger("fhirhub.oscar")
__version__ = "0.1.0"
PLUGIN_NAME = "oscar"
MANIFEST = {
    "resource_types": [
        "Patient",
        "Practitioner",
        "PractitionerRole",
        "AllergyIntolerance",
        "MedicationRequest",
        "Observation",
        "Appointment",
        "Slot",
        "Schedule",
        "Encounter",
        "DocumentReference",
        "Condition",
        "Provenance",
        "Task",
        "Binary",
    ],
    "scopes": ["system/*.cruds"],
}


@hookimpl
def startup(hub: Hub) -> None:
    from fhirhub.adapters.oscar.runtime import runtime

    current = runtime(hub)
    if current is None:
        log.info("OSCAR adapter: no source configured ([plugin.oscar]); idle")
        return
    log.info(
        "OSCAR adapter: %s source %s", current.settings.source_kind, current.settings.instance_name
    )
    if current.settings.source_kind == "demo":
        current.sync_in_background()  # the demo clinic is there as soon as the hub is


@hookimpl
def shutdown(hub: Hub) -> None:
    from fhirhub.adapters.oscar.runtime import drop_runtime

    drop_runtime(hub)


@hookimpl
def register_schedules(hub: Hub) -> list[Schedule]:
    from fhirhub.adapters.oscar.runtime import runtime

    current = runtime(hub)
    if current is None:
        return []
    schedules = []
    if current.settings.interval_s > 0:
        schedules.append(
            Schedule("oscar-sync", current.settings.interval_s, _scheduled_sync, timeout_s=3600)
        )
    if current.settings.writeback:
        schedules.append(Schedule("oscar-writeback", 10.0, _scheduled_writeback, timeout_s=600))
    return schedules


def _scheduled_sync(hub: Hub) -> None:
    from fhirhub.adapters.oscar.runtime import runtime
    from fhirhub.adapters.oscar.sync import SyncBusy

    current = runtime(hub)
    if current is not None:
        try:
            current.sync()
        except SyncBusy:
            log.info("OSCAR sync skipped: the previous one is still running")


def _scheduled_writeback(hub: Hub) -> None:
    from fhirhub.adapters.oscar.runtime import runtime
    from fhirhub.adapters.oscar.writeback import drain

    current = runtime(hub)
    if current is not None:
        drain(current)


@hookimpl
def register_consumers(hub: Hub) -> list[Consumer]:
    from fhirhub.adapters.oscar.runtime import runtime
    from fhirhub.adapters.oscar.writeback import WRITEBACK_TYPES, consumer_handler

    current = runtime(hub)
    if current is None or not current.settings.writeback:
        return []
    return [
        Consumer(
            "oscar-writeback",
            consumer_handler(current),
            types=WRITEBACK_TYPES,
            batch_size=50,
            timeout_s=300,
        )
    ]


@hookimpl
def register_routes(hub: Hub) -> Any:
    from fhirhub.adapters.oscar.routes import router

    return router(hub)


@hookimpl
def ui_pages(hub: Hub) -> list[dict[str, Any]]:
    from fhirhub.adapters.oscar.routes import PAGE_PATH

    return [{"path": PAGE_PATH, "title": "OSCAR", "icon": "⇄", "order": 80}]


@hookimpl
def public_paths(hub: Hub) -> list[str]:
    """The admin page is a shell with no data, loaded in the UI shell's frame (which cannot
    send a bearer token); its script reads ``/plugins/oscar/status`` with the user's token."""
    from fhirhub.adapters.oscar.routes import PAGE_PATH

    return [PAGE_PATH]


@hookimpl
def register_commands(cli: Any) -> None:
    from fhirhub.adapters.oscar.cli import add_commands

    add_commands(cli)
