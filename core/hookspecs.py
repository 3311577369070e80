"""The hook catalogue: every extension point of fhirhub, in one module.

Built-in features (``plugins/*``, ``adapters/*``) implement these hooks exactly like
third-party plugins found through the ``fhirhub.plugins`` entry-point group. Hooks return plain
data (routers, operation definitions, page descriptions); they do not reach into globals.
Unless marked ``firstresult``, every implementation is called and the results are collected
in a list (``None`` results dropped).

Import ``hookimpl`` from :mod:`fhirhub.sdk` to implement them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from fhirhub.core.hub import Hub, WriteContext
    from fhirhub.core.operations import Operation
    from fhirhub.fhir_store.versions import StoredVersion

PROJECT_NAME = "fhirhub"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# -- lifecycle -------------------------------------------------------------------------------


@hookspec
def startup(hub: Hub) -> None:
    """Called once when the hub starts serving, after the store is ready.

    Start background work here (listeners, pollers); ``hub`` gives access to the store, the
    settings and the task runner. Raising disables this plugin and is reported; the hub starts.
    """


@hookspec
def shutdown(hub: Hub) -> None:
    """Called once when the hub stops; release what ``startup`` acquired."""


@hookspec
def health_checks(hub: Hub) -> list[tuple[str, Any]] | None:
    """Return ``[(name, check)]`` where ``check()`` returns ``True``/``False`` or raises;
    ``/healthz`` reports each by name and is unhealthy if any fails."""


# -- HTTP ------------------------------------------------------------------------------------


@hookspec
def register_routes(hub: Hub) -> Any:
    """Return a FastAPI ``APIRouter`` (or a list of them) to mount under ``/plugins/<name>``."""


@hookspec
def register_operations(hub: Hub) -> list[Operation] | None:
    """Return :class:`fhirhub.sdk.Operation` objects: FHIR ``$operations`` at system, type or
    instance level, each with its OperationDefinition. They are listed in the
    CapabilityStatement automatically."""


# -- data ------------------------------------------------------------------------------------


@hookspec
def resource_before_write(resource: dict[str, Any], context: WriteContext) -> None:
    """Called for every create, update and patch inside the write transaction, after
    structural validation and before the version is appended.

    ``resource`` is the resource as it will be stored (without ``meta.versionId``); a hook may
    modify it in place (enrich) or veto the write by raising
    :class:`fhirhub.sdk.FhirError` (an OperationOutcome), which aborts the whole transaction.
    ``context`` says which interaction is running and gives the unit of work.
    """


@hookspec
def resource_committed(event: StoredVersion, hub: Hub) -> None:
    """Called after commit for each new version (creates, updates and deletion tombstones),
    in log order, at least once, never on the writer's thread.

    A failing implementation is logged and retried from its own position; it never loses or
    corrupts a write and does not hold other plugins back. Make handlers idempotent.
    """


@hookspec
def register_search_parameters(hub: Hub) -> list[dict[str, Any]] | None:
    """Return SearchParameter resources (as dicts) to activate in addition to the standard ones."""


@hookspec
def register_code_systems(hub: Hub) -> list[dict[str, Any]] | None:
    """Return CodeSystem and ValueSet resources (as dicts) the plugin provides; they are stored
    (idempotently, by canonical url) at start-up."""


# -- CLI -------------------------------------------------------------------------------------


@hookspec
def register_commands(cli: Any) -> None:
    """Add subcommands to the ``fhirhub`` command line (``cli`` is a ``typer.Typer``)."""


# -- background work -------------------------------------------------------------------------


@hookspec
def register_tasks(hub: Hub) -> dict[str, Any] | None:
    """Return ``{name: function}`` of background tasks. They run in-process by default and on
    Celery workers when ``FHIRHUB_BROKER`` names a Redis or RabbitMQ URL; schedule them with
    ``hub.tasks.submit(name, *args)``. Arguments must be JSON-serialisable."""


# -- UI --------------------------------------------------------------------------------------


@hookspec
def ui_pages(hub: Hub) -> list[dict[str, Any]] | None:
    """Return pages for the UI shell's navigation: ``{"path", "title", "icon"?, "order"?}``;
    ``path`` is a route of the plugin (usually under its ``/plugins/<name>`` prefix)."""


@hookspec
def ui_patient_panels(hub: Hub) -> list[dict[str, Any]] | None:
    """Return panels for the patient chart: ``{"id", "title", "order"?, "resource_types"
    or "url"}``; the shell renders them from the public FHIR API for the open patient."""
