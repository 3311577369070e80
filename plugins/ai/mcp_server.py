"""The hub as a Model Context Protocol server (the official ``mcp`` SDK).

* Streamable HTTP at ``/plugins/ai/mcp`` (stateless, JSON responses): behind the hub's own
  authentication, so every tool runs with the caller's access (SMART token, tenant, patient);
* stdio through ``fhirhub ai mcp --tenant ORG`` for a local client (a desktop assistant): it
  runs as the system *for that tenant* (``--patient`` narrows it to one patient).

Tools: ``fhir_search``, ``fhir_read``, ``fhir_create``, ``search_documents`` and ``ask`` (the
assistant's whole turn: guardrails, routed tools, answer, sources, Provenance). Resource:
``fhirhub://patient/{patient_id}/summary``, a text summary of one patient's record.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from fhirhub.sdk import (
    Access,
    FhirError,
    Hub,
    HubLocal,
    acting_as,
    current_access,
    transaction,
)

from .chat import ChatRequest, ChatTurn
from .provider import provider_for
from .render import summary_line
from .settings import settings_of
from .tools import (
    ToolContext,
    ToolResult,
    call_tool,
    fhir_read,
    fhir_search,
    offered,
    search_documents,
)

#: The types a patient summary lists, in this order.
SUMMARY_TYPES = ("Condition", "MedicationRequest", "AllergyIntolerance", "Observation")


def _result(result: ToolResult) -> dict[str, Any]:
    return {**result.content, "references": result.references}


def build_server(hub: Hub, fixed: Access | None = None, patient: str | None = None) -> MCPServer:
    """The MCP server. ``fixed``: the access every call runs with (stdio); None: the caller
    of the HTTP request (the hub's authentication has set it)."""
    server: MCPServer = MCPServer(
        "fhirhub",
        instructions="FHIR R4 data of the hub, with the caller's access. Cite references.",
    )

    def context(wanted: str | None) -> ToolContext:
        access = fixed if fixed is not None else current_access()
        focus = access.patient or patient or wanted
        if access.patient is not None and wanted not in (None, access.patient):
            raise FhirError(403, "This token is limited to its own patient", code="forbidden")
        return ToolContext(hub, access, focus, settings_of(hub).top_k)

    def guarded(run: Any) -> dict[str, Any]:
        try:
            return dict(run())
        except FhirError as error:
            return {"error": error.message, "status": error.status}

    @server.tool(description="Search FHIR resources (within one patient when given).")
    def fhir_search_tool(
        resource_type: str, params: dict[str, str] | None = None, patient: str | None = None
    ) -> dict[str, Any]:
        return guarded(lambda: _result(fhir_search(context(patient), resource_type, params or {})))

    @server.tool(description="Read one FHIR resource by type and id.")
    def fhir_read_tool(resource_type: str, id: str) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            ctx = context(None)
            summary = _result(fhir_read(ctx, resource_type, id))
            with acting_as(ctx.access):
                from fhirhub.sdk import read

                summary["resource"] = read(hub, resource_type, id)
            return summary

        return guarded(run)

    @server.tool(description="Create a FHIR resource (validated, with the caller's scopes).")
    def fhir_create_tool(resource: dict[str, Any]) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            ctx = context(None)
            with acting_as(ctx.access), transaction(hub) as tx:
                written = tx.create(resource)
            return {"reference": written.version.reference, "status": written.status}

        return guarded(run)

    @server.tool(description="Retrieve cited passages of the record and guideline documents.")
    def search_documents_tool(query: str, patient: str | None = None) -> dict[str, Any]:
        return guarded(lambda: _result(search_documents(context(patient), query)))

    @server.tool(
        description="Run any tool the assistant offers (decision pathways, the literature "
        "tools when configured, other plugins' scores and lookups) by name."
    )
    def run_tool(
        name: str, arguments: dict[str, Any] | None = None, patient: str | None = None
    ) -> dict[str, Any]:
        return guarded(lambda: _result(call_tool(context(patient), name, arguments or {})))

    @server.resource(
        "fhirhub://tools",
        description="The tools run_tool can run, with their JSON Schemas",
        mime_type="application/json",
    )
    def tool_list() -> str:
        import json

        return json.dumps([tool.openai_schema()["function"] for tool in offered(hub)])

    @server.tool(description="Ask the hub's assistant; the answer lists its sources.")
    def ask(question: str, patient: str | None = None) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            ctx = context(patient)
            settings = settings_of(hub)
            with acting_as(ctx.access):
                turn = ChatTurn(
                    hub,
                    settings,
                    provider_for(settings),
                    ChatRequest([{"role": "user", "content": question}], ctx.patient),
                )
                text: list[str] = []
                meta: dict[str, Any] = {}
                for event in turn.events():
                    if event.kind == "text":
                        text.append(event.text)
                    elif event.kind == "end":
                        text.append(event.text)
                        meta = event.data
            return {"answer": "".join(text), "sources": meta.get("references", [])}

        return guarded(run)

    @server.resource(
        "fhirhub://patient/{patient_id}/summary",
        description="A text summary of one patient's record",
        mime_type="text/plain",
    )
    def patient_summary(patient_id: str) -> str:
        ctx = context(patient_id)
        if ctx.patient != patient_id:
            raise ValueError("This token is limited to its own patient")
        lines: list[str] = []
        try:
            lines.append(summary_line(_read(ctx, "Patient", patient_id)))
            for kind in SUMMARY_TYPES:
                found = fhir_search(ctx, kind, {"_sort": "-date"} if kind == "Observation" else {})
                lines.extend(f"{e['summary']} [{e['reference']}]" for e in found.content["entries"])
        except FhirError as error:
            raise ValueError(error.message) from error
        return "\n".join(lines)

    return server


def _read(ctx: ToolContext, kind: str, id: str) -> dict[str, Any]:
    from fhirhub.sdk import read

    with acting_as(ctx.access):
        return read(ctx.hub, kind, id)


class McpEndpoint:
    """The streamable HTTP transport inside the hub's app: the SDK's session manager, started
    on the serving event loop at the first request (in a fresh context, so no caller's access
    leaks into it) and stopped with the hub."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._managers: dict[int, Any] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stops: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def _manager(self) -> Any:
        loop = asyncio.get_running_loop()
        key = id(loop)
        if key in self._managers:
            return self._managers[key]
        server = build_server(self.hub)
        server.streamable_http_app(
            stateless_http=True,
            json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        manager = server.session_manager
        started = asyncio.Event()
        stop = asyncio.Event()

        async def run() -> None:
            async with manager.run():
                started.set()
                await stop.wait()

        task = loop.create_task(run(), context=contextvars.Context())
        self._tasks.append(task)
        self._stops.append((loop, stop))
        await started.wait()
        self._managers[key] = manager
        return manager

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        manager = await self._manager()
        await manager.handle_request(scope, receive, send)

    def close(self) -> None:
        for loop, stop in self._stops:
            if not loop.is_closed():
                loop.call_soon_threadsafe(stop.set)
        self._stops.clear()


class AsgiPassThrough(Response):
    """A response that hands the request to an ASGI callable (the MCP transport)."""

    def __init__(self, endpoint: McpEndpoint) -> None:
        super().__init__()
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.endpoint.handle(scope, receive, send)


_endpoints: HubLocal[McpEndpoint] = HubLocal("ai.mcp")


def endpoint_of(hub: Hub) -> McpEndpoint:
    return _endpoints.setdefault(hub, lambda: McpEndpoint(hub))


def run_stdio(hub: Hub, access: Access, patient: str | None) -> None:
    """Serve MCP over stdin/stdout until the client closes it."""
    server = build_server(hub, fixed=access, patient=patient)
    asyncio.run(server.run_stdio_async())
