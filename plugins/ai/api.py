"""The HTTP face: ``POST /plugins/ai/v1/chat/completions`` (OpenAI-compatible, streaming as
server-sent events), ``GET /plugins/ai/v1/models``, ``POST /plugins/ai/v1/retrieve`` (the
retrieval index alone) and the chat page.

Every route runs as its caller: the access control middleware has set the caller before the
route runs, and streamed bodies carry it explicitly into the thread that produces them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from fhirhub.sdk import Hub, acting_as, current_access, invalid, new_id

from .chat import ChatRequest, ChatTurn, Event
from .index import index_of
from .provider import EXTRACTIVE_MODEL, provider_for
from .settings import settings_of


def _completion(turn_id: str, model: str, content: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": turn_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "fhirhub": extra,
    }


def _client_calls(turn_id: str, model: str, event: Event) -> dict[str, Any]:
    calls = [
        {
            "id": c.id,
            "type": "function",
            "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
        }
        for c in event.data["calls"]
    ]
    return {
        "id": turn_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "tool_calls": calls},
                "finish_reason": "tool_calls",
            }
        ],
    }


def _chunk(turn_id: str, model: str, delta: dict[str, Any], **extra: Any) -> bytes:
    body: dict[str, Any] = {
        "id": turn_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": extra.pop("finish", None)}],
        **extra,
    }
    return f"data: {json.dumps(body)}\n\n".encode()


def router(hub: Hub) -> APIRouter:
    routes = APIRouter()

    @routes.get("/v1/models")
    def models() -> dict[str, Any]:
        settings = settings_of(hub)
        name = settings.model if settings.model_configured() else EXTRACTIVE_MODEL
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "fhirhub"}]}

    @routes.get("/v1/status")
    def status() -> dict[str, Any]:
        settings = settings_of(hub)
        return {
            "model": settings.model if settings.model_configured() else None,
            "provider": "openai-compatible" if settings.model_configured() else "extractive",
            "external": settings.is_external() if settings.model_configured() else False,
            "indexed_chunks": len(index_of(hub).bm25),
            "indexed_resources": index_of(hub).bm25.resources(),
        }

    @routes.post("/v1/retrieve")
    def retrieve(body: dict[str, Any]) -> dict[str, Any]:
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            raise invalid("'query' must be a non-empty string")
        patient = body.get("patient")
        turn = ChatTurn(
            hub,
            settings_of(hub),
            provider_for(settings_of(hub)),
            ChatRequest([{"role": "user", "content": query}], patient if patient else None),
        )
        k = min(int(body.get("k") or 5), 50)
        sources = index_of(hub).search(query, turn.access, turn.patient, k)
        return {"query": query, "sources": [s.as_json() for s in sources]}

    @routes.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> Any:
        try:
            body = await request.json()
        except ValueError as error:
            raise invalid("The body is not JSON") from error
        parsed = ChatRequest.parse(body)
        access = current_access()
        settings = settings_of(hub)
        provider = provider_for(settings)
        turn_id = f"chatcmpl-{new_id()}"
        if parsed.stream:
            from starlette.concurrency import run_in_threadpool

            with acting_as(access):
                turn = await run_in_threadpool(ChatTurn, hub, settings, provider, parsed)
            return StreamingResponse(
                _sse(turn, access, turn_id, provider.name), media_type="text/event-stream"
            )
        from starlette.concurrency import run_in_threadpool

        def run() -> dict[str, Any]:
            with acting_as(access):
                turn = ChatTurn(hub, settings, provider, parsed)
                text: list[str] = []
                for event in turn.events():
                    if event.kind == "text":
                        text.append(event.text)
                    elif event.kind == "client_tools":
                        return _client_calls(turn_id, provider.name, event)
                    elif event.kind == "end":
                        text.append(event.text)
                        return _completion(turn_id, provider.name, "".join(text), event.data)
                raise RuntimeError("The turn ended without an answer")

        return JSONResponse(await run_in_threadpool(run))

    @routes.post("/v1/drafts", status_code=201)
    def new_draft(body: dict[str, Any]) -> dict[str, Any]:
        """A draft note from a stored answer: ``{"answer": "Communication/ID", "title"?}``."""
        from .drafts import create_draft

        answer = body.get("answer")
        if not isinstance(answer, str):
            raise invalid("'answer' must be a reference to the assistant's Communication")
        title = body.get("title")
        return create_draft(hub, answer, str(title) if title else None)

    @routes.post("/v1/drafts/{draft_id}/sign")
    def sign(draft_id: str) -> dict[str, Any]:
        from .drafts import sign_draft

        return sign_draft(hub, draft_id)

    @routes.api_route("/mcp", methods=["GET", "POST", "DELETE"], include_in_schema=False)
    async def mcp(request: Request) -> Any:
        from .mcp_server import AsgiPassThrough, endpoint_of

        return AsgiPassThrough(endpoint_of(hub))

    return routes


def _as_caller(access: Any, events: Iterator[Event]) -> Iterator[Event]:
    """Each step of ``events`` as the caller. A streamed body is iterated step by step in
    worker threads, each with its own context, so the caller is set around every step rather
    than once around the loop."""
    while True:
        with acting_as(access):
            event = next(events, None)
        if event is None:
            return
        yield event


def _sse(turn: ChatTurn, access: Any, turn_id: str, model: str) -> Iterator[bytes]:
    """The turn as OpenAI ``chat.completion.chunk`` events; the hub's tool calls and the
    final summary ride along in a ``fhirhub`` field that OpenAI clients ignore."""
    yield _chunk(turn_id, model, {"role": "assistant", "content": ""})
    for event in _as_caller(access, turn.events()):
        if event.kind == "text":
            yield _chunk(turn_id, model, {"content": event.text})
        elif event.kind == "tool":
            yield _chunk(turn_id, model, {}, fhirhub={"tool": event.data})
        elif event.kind == "client_tools":
            calls = [
                {
                    "index": n,
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
                }
                for n, c in enumerate(event.data["calls"])
            ]
            yield _chunk(turn_id, model, {"tool_calls": calls}, finish="tool_calls")
        elif event.kind == "end":
            if event.text:
                yield _chunk(turn_id, model, {"content": event.text})
            yield _chunk(turn_id, model, {}, finish="stop", fhirhub=event.data)
    yield b"data: [DONE]\n\n"
