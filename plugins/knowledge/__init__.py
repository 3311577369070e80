"""A clinical knowledge graph held as FHIR, traversable, and checking every order
(docs/knowledge.md).

* the graph: R4 ``MedicinalProductIndication`` / ``Contraindication`` / ``Interaction`` /
  ``UndesirableEffect`` and ``Basic`` resources (``fhir_codec.py``), indexed by a consumer of
  the version log (``index.py``) into adjacency tables and an in-memory graph (``graph.py``);
* ``fhirhub knowledge load [SOURCE]``: the openly licensed sources shipped in ``data/``
  (``sources.py``), or a hospital's own (``loader.py``), each with a Provenance;
* ``$graph`` and ``Patient/{id}/$knowledge`` (``operations.py``) and the graph page;
* order checks on every MedicationRequest write (``orders.py``): DetectedIssues, and a 422
  for findings at ``block_severity`` unless overridden; the same checks as a CDS Hooks
  service (``cds_hooks.py``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse

from fhirhub.plugins.knowledge import cds_hooks
from fhirhub.plugins.knowledge.fhir_codec import EDGE_TYPES, edges_of
from fhirhub.plugins.knowledge.operations import operations
from fhirhub.plugins.knowledge.orders import check_written_orders
from fhirhub.plugins.knowledge.service import PLUGIN_NAME, service_of
from fhirhub.sdk import (
    Consumer,
    Hub,
    HubLocal,
    Operation,
    Schedule,
    Transaction,
    WriteContext,
    command_hub,
    hookimpl,
    match,
    not_found,
)

__version__ = "1.0.0"
__all__ = ["PLUGIN_NAME"]

MANIFEST = {
    "resource_types": [*sorted(EDGE_TYPES), "DetectedIssue", "Provenance"],
    "scopes": ["system/DetectedIssue.c", "system/MedicinalProductIndication.r"],
}

STATIC = Path(__file__).resolve().parent / "static"
PAGE = f"/plugins/{PLUGIN_NAME}/graph/"
DEMO_PATIENT = "identifier=https://fhirhub.example.org/demo/mrn|100234"
log = logging.getLogger("fhirhub.knowledge")
_demo_loaded: HubLocal[bool] = HubLocal("knowledge.demo-loaded")


@hookimpl
def register_consumers(hub: Hub) -> list[Consumer]:
    index = service_of(hub).index
    return [
        Consumer(
            "knowledge-graph",
            index.apply,
            start="beginning",
            batch_size=500,
            types=EDGE_TYPES,
            reset=index.clear,
        )
    ]


@hookimpl
def register_operations(hub: Hub) -> list[Operation]:
    service_of(hub)  # its tables are created now, not inside a writer's transaction
    return operations()


@hookimpl
def resource_before_write(resource: dict[str, Any], context: WriteContext) -> None:
    """An edit of the graph must state a valid edge (kinds, known code systems, no
    self-loop): refused with 422 otherwise, before anything is stored."""
    if context.resource_type in EDGE_TYPES:
        edges_of(resource, context.resource_id)


@hookimpl
def before_commit(transaction: Transaction) -> None:
    check_written_orders(service_of(transaction.hub), transaction)


@hookimpl
def register_routes(hub: Hub) -> APIRouter:
    router = APIRouter()

    @router.get("/graph/")
    def graph_page() -> FileResponse:
        # The page holds no data: its script calls $graph and $knowledge with the user's token.
        return FileResponse(STATIC / "graph.html", media_type="text/html")

    @router.get("/graph/{name}")
    def graph_asset(name: str) -> FileResponse:
        media = {"graph.js": "text/javascript", "cytoscape.min.js": "text/javascript"}
        media["graph.css"] = "text/css"
        if name not in media:
            raise not_found(name)
        return FileResponse(STATIC / name, media_type=media[name])

    router.include_router(cds_hooks.router(hub))
    return router


@hookimpl
def public_paths(hub: Hub) -> list[str]:
    return [PAGE]


@hookimpl
def ui_pages(hub: Hub) -> list[dict[str, Any]]:
    return [{"path": PAGE, "title": "Knowledge graph", "order": 50}]


@hookimpl
def ui_patient_panels(hub: Hub) -> list[dict[str, Any]]:
    return [
        {
            "id": "knowledge-issues",
            "title": "Order warnings (knowledge graph)",
            "order": 30,
            "resource_types": ["DetectedIssue"],
        },
        # The graph page, opened on this patient's drugs, conditions and allergies.
        {
            "id": "knowledge-graph",
            "title": "Knowledge graph: this patient",
            "order": 31,
            "url": PAGE + "?patient={patient_id}",
        },
    ]


@hookimpl
def register_schedules(hub: Hub) -> list[Schedule]:
    return [Schedule("knowledge-demo-load", 30.0, _demo_load, timeout_s=600.0)]


def _demo_load(hub: Hub) -> None:
    """With the demo patients and an empty graph, load the shipped sources (the demo shows the
    graph and order warnings without a separate command). A schedule rather than a startup
    hook: it runs once the hub is serving, so its writes do not compete with the start-up's."""
    service = service_of(hub)
    if (
        not service.settings.load_with_demo
        or _demo_loaded.get(hub)
        or service.index.generation() > 0
        or not match(hub, "Patient", DEMO_PATIENT)
    ):
        return
    from fhirhub.plugins.knowledge.loader import load_source
    from fhirhub.plugins.knowledge.sources import BUILTIN

    for source in BUILTIN.values():
        count = load_source(hub, source)
        log.info("knowledge: loaded %d edges from %s", count, source.info.label)
    _demo_loaded.set(hub, True)


@hookimpl
def register_commands(cli: Any) -> None:
    import typer

    group = typer.Typer(help="The clinical knowledge graph (docs/knowledge.md)")
    cli.add_typer(group, name="knowledge")

    @group.command("load")
    def load_command(
        source: str = typer.Argument("all", help="a built-in source, all, or module:Source"),
        db: str | None = None,
        tenant: str | None = typer.Option(None, help="load as this tenant's own edits"),
    ) -> None:
        """Load a knowledge source into the graph (again: updates what it loaded before)."""
        from fhirhub.plugins.knowledge.loader import load_source, source_named
        from fhirhub.plugins.knowledge.sources import BUILTIN
        from fhirhub.sdk import acting_as, system_for

        names = list(BUILTIN) if source == "all" else [source]
        with command_hub(db=db) as hub, acting_as(system_for(tenant)):
            for name in names:
                chosen = source_named(name)
                typer.echo(f"{chosen.info.label} ({chosen.info.licence})")
                count = load_source(
                    hub, chosen, lambda n: typer.echo(f"  {n} edges written", err=True)
                )
                typer.echo(f"  {count} edges loaded from {name}")

    @group.command("sources")
    def sources_command() -> None:
        """List the built-in sources with their versions, licences and coverage."""
        from fhirhub.plugins.knowledge.sources import BUILTIN

        for name, source in BUILTIN.items():
            info = source.info
            typer.echo(f"{name}: {info.label} [{info.licence}] {info.note}")
