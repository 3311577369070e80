"""The AI assistant: an OpenAI-compatible chat over the hub's FHIR data, with tools that run
with the caller's access, lexical retrieval with citations, deterministic guardrails before
and after the model, a Provenance for every answer, and an MCP server (docs/ai.md).

* ``POST /plugins/ai/v1/chat/completions`` and the chat page ``/plugins/ai/ui/`` (``api.py``,
  ``ui.py``); ``/plugins/ai/mcp`` and ``fhirhub ai mcp`` (``mcp_server.py``);
* the retrieval index, kept in step by the consumer ``ai-index`` (``index.py``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from fhirhub.sdk import Consumer, Hub, WriteContext, hookimpl

from .settings import PLUGIN_NAME, settings_of

__version__ = "0.1.0"
__all__ = ["PLUGIN_NAME"]

MANIFEST = {
    "resource_types": ["Communication", "Provenance", "DocumentReference", "Binary", "*"],
    "scopes": ["user/*.rs", "patient/*.rs"],
}


@hookimpl
def register_consumers(hub: Hub) -> list[Consumer]:
    if not settings_of(hub).index:
        return []
    from .index import index_of
    from .render import INDEXED_TYPES

    index = index_of(hub)
    return [
        Consumer(
            "ai-index",
            index.handle,
            start="beginning",
            batch_size=500,
            types=INDEXED_TYPES,
            reset=index.clear,
            # A retrieval index may lag half a second: under a load, batches of hundreds of
            # versions instead of one transaction per committed Bundle.
            linger_s=0.5,
        )
    ]


@hookimpl
def register_routes(hub: Hub) -> list[APIRouter]:
    from . import api, ui

    return [api.router(hub), ui.router()]


@hookimpl
def resource_before_write(resource: dict[str, Any], context: WriteContext) -> None:
    from .drafts import guard_write

    guard_write(resource, context)


@hookimpl
def shutdown(hub: Hub) -> None:
    from .mcp_server import _endpoints

    if (endpoint := _endpoints.pop(hub)) is not None:
        endpoint.close()


@hookimpl
def register_commands(cli: Any) -> None:
    import typer

    group = typer.Typer(help="AI assistant: the MCP server over stdio")
    cli.add_typer(group, name="ai")

    @group.command("mcp")
    def mcp_stdio(
        tenant: str | None = None,
        patient: str | None = None,
        all_tenants: bool = False,
        db: str | None = None,
    ) -> None:
        """Serve the hub as an MCP server over stdin/stdout, as the system for TENANT
        (--patient: one patient only; --all-tenants: every tenant, for an administrator)."""
        from fhirhub.sdk import Access, command_hub, system_for

        from .mcp_server import run_stdio

        if tenant is None and not all_tenants:
            raise SystemExit("Name the tenant (--tenant ORG) or pass --all-tenants")
        import sys

        access = system_for(tenant)
        if patient is not None:
            access = Access("system", tenant=tenant, patient=patient)
        protocol = sys.stdout
        sys.stdout = sys.stderr  # stdout carries the protocol: nothing else may print there
        try:
            with command_hub(db=db) as hub:
                sys.stdout = protocol
                run_stdio(hub, access, patient)
        finally:
            sys.stdout = protocol


@hookimpl
def public_paths(hub: Hub) -> list[str]:
    from .ui import PAGE

    return [PAGE]


@hookimpl
def ui_pages(hub: Hub) -> list[dict[str, Any]]:
    from .ui import PAGE

    return [{"path": PAGE, "title": "AI assistant", "order": 60}]


@hookimpl
def ui_patient_panels(hub: Hub) -> list[dict[str, Any]]:
    from .ui import PAGE

    return [
        {
            "id": "ai-assistant",
            "title": "Ask the AI assistant",
            "order": 90,
            "url": PAGE + "panel?patient={patient_id}",
        }
    ]
