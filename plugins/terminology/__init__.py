"""A FHIR terminology service (docs/terminology.md).

* code systems in the plugin's concept tables (``tables.py``): ICD-10-CM from the
  ``simple-icd-10-cm`` package or the CMS CSV, LOINC and SNOMED CT from releases the user
  provides, every CodeSystem resource stored in the hub (a consumer projects them), and the
  R4 specification's own code systems, shipped;
* ``CodeSystem/$lookup``, ``$validate-code``, ``$subsumes``, ``ValueSet/$expand``,
  ``$validate-code``, ``ConceptMap/$translate`` (``operations.py``), and ``CodeSystem/$load``
  for administrators (a background task reported through a Task resource);
* the search modifiers ``:in``, ``:not-in``, ``:below``, ``:above`` on token parameters
  (``search.py``, through the ``search_token_codes`` hook);
* UCUM conversion for quantity search (``ucum.py``, through ``search_quantity_units``);
* codes of strict systems checked on write, and codes outside extensible or preferred
  bindings found for ``$validate`` (``bindings.py``, through ``validate_bound_codes``);
* ``fhirhub terminology load icd10cm`` and a code browser page in the UI shell.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from fhirhub.plugins.terminology import bindings, ucum
from fhirhub.plugins.terminology.consumer import handle_code_systems, reset_projection
from fhirhub.plugins.terminology.fhir_codesystem import from_resource
from fhirhub.plugins.terminology.load_operation import load_operation, run_load_task
from fhirhub.plugins.terminology.model import MAX_POSTED_PAIRS, closure
from fhirhub.plugins.terminology.operations import operations
from fhirhub.plugins.terminology.search import token_codes
from fhirhub.plugins.terminology.service import PLUGIN_NAME, service_of
from fhirhub.sdk import (
    BoundCode,
    Consumer,
    Hub,
    Operation,
    TokenCodes,
    TokenModifier,
    UnitConversion,
    WriteContext,
    command_hub,
    hookimpl,
)

__version__ = "1.0.0"
__all__ = ["PLUGIN_NAME"]

log = logging.getLogger("fhirhub.terminology")

MANIFEST = {
    "resource_types": ["CodeSystem", "ValueSet", "ConceptMap", "Task"],
    "scopes": ["system/CodeSystem.crus", "system/ValueSet.rs", "system/ConceptMap.rs"],
}

STATIC = Path(__file__).resolve().parent / "static"
BROWSER_PAGE = f"/plugins/{PLUGIN_NAME}/browser/"


@hookimpl
def register_operations(hub: Hub) -> list[Operation]:
    # The service (and its tables) now, while the hub is built: never lazily inside a write
    # transaction, where creating tables would wait on the writer's own lock.
    service_of(hub)
    return [*operations(), load_operation()]


@hookimpl
def register_tasks(hub: Hub) -> dict[str, Any]:
    return {"terminology.load": lambda *args: run_load_task(hub, *args)}


@hookimpl
def register_consumers(hub: Hub) -> list[Consumer]:
    service = service_of(hub)
    return [
        Consumer(
            "terminology-codesystems",
            lambda versions: handle_code_systems(service, versions),
            start="beginning",
            batch_size=20,
            types=frozenset({"CodeSystem"}),
            reset=lambda: reset_projection(service),
        )
    ]


@hookimpl
def resource_before_write(resource: dict[str, Any], context: WriteContext) -> None:
    if context.resource_type == "CodeSystem" and resource.get("concept") and resource.get("url"):
        # Refuse a CodeSystem whose concepts the projection could not load (a cycle, a parent
        # that is not a concept, a malformed code) before it is stored, not in the consumer.
        list(closure(from_resource(resource).concepts, MAX_POSTED_PAIRS))
        return
    bindings.check_resource(service_of(context.hub), resource)


@hookimpl
def search_token_codes(request: TokenModifier, hub: Hub) -> TokenCodes | None:
    return token_codes(service_of(hub), request)


@hookimpl
def validate_bound_codes(codes: list[BoundCode], hub: Hub) -> list[BoundCode]:
    return bindings.codes_outside(service_of(hub), codes)


@hookimpl
def search_quantity_units(code: str, stored: list[str], hub: Hub) -> dict[str, UnitConversion]:
    return ucum.conversions(code, stored)


@hookimpl
def startup(hub: Hub) -> None:
    service = service_of(hub)
    if hub.settings.listeners and (service.settings.preload or service.settings.load_icd10cm):
        threading.Thread(
            target=_preload, args=(hub, service), name="terminology-preload", daemon=True
        ).start()


def _preload(hub: Hub, service: Any) -> None:
    try:
        if service.settings.preload:
            service.ensure_r4()
            ucum.registry()
        if service.settings.load_icd10cm:
            from fhirhub.plugins.terminology.loading import load
            from fhirhub.plugins.terminology.model import ICD10CM
            from fhirhub.plugins.terminology.store import find_version

            with service.db.read() as conn:
                loaded = find_version(conn, ICD10CM) is not None
            if not loaded:
                summary = load(hub, "icd10cm").summary()
                log.info(
                    "Loaded ICD-10-CM %s: %s concepts", summary["version"], summary["concepts"]
                )
    except Exception:  # the R4 content loads again on first use
        log.exception("Preparing the terminology failed")


@hookimpl
def register_routes(hub: Hub) -> APIRouter:
    router = APIRouter()

    @router.get("/browser/", response_class=HTMLResponse)
    def browser_page() -> FileResponse:
        # The page holds no data: its script calls the terminology operations with the
        # signed-in user's token, as the UI shell does.
        return FileResponse(STATIC / "browser.html", media_type="text/html")

    @router.get("/browser/browser.js")
    def browser_script() -> FileResponse:
        return FileResponse(STATIC / "browser.js", media_type="text/javascript")

    return router


@hookimpl
def public_paths(hub: Hub) -> list[str]:
    return [BROWSER_PAGE]


@hookimpl
def ui_pages(hub: Hub) -> list[dict[str, Any]]:
    return [{"path": BROWSER_PAGE, "title": "Code browser", "order": 50}]


@hookimpl
def register_commands(cli: Any) -> None:
    import typer

    group = typer.Typer(help="Terminology: load code systems (docs/terminology.md)")
    cli.add_typer(group, name="terminology")

    @group.command("load")
    def load_command(
        source: str = typer.Argument(..., help="icd10cm | loinc | snomed"),
        csv: str | None = typer.Option(None, help="The source file (CMS ICD-10 CSV, Loinc.csv)"),
        rf2: str | None = typer.Option(None, help="SNOMED CT: the RF2 snapshot folder"),
        hierarchy: str | None = typer.Option(None, help="LOINC: MultiAxialHierarchy.csv"),
        version: str | None = typer.Option(None, help="The version loaded (default: the source's)"),
        db: str | None = None,
    ) -> None:
        """Load a code system version (a new version keeps the old one queryable)."""
        from tqdm import tqdm

        from fhirhub.plugins.terminology.loading import load

        bar = tqdm(unit="rows", desc="reading")

        def progress(step: str, done: int, total: int) -> None:
            if bar.desc != step:
                bar.set_description(step)
                bar.reset(total=total)
            bar.total = total
            bar.n = done
            bar.refresh()

        with command_hub(db=db) as hub:
            result = load(
                hub,
                source,
                path=csv or rf2,
                version=version,
                hierarchy=hierarchy,
                progress=progress,
            )
        bar.close()
        summary = result.summary()
        typer.echo(
            f"Loaded {summary['url']} version {summary['version']}: {summary['concepts']} concepts "
            f"in {summary['seconds']} s ({summary['resource']})"
        )
