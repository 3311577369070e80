"""Who writes the answer: an OpenAI-compatible model server, or, with none configured, the
deterministic extractive provider.

Both speak the same small interface: :meth:`turn` (one non-streamed completion that may ask
for tools) and :meth:`stream` (the final answer as text deltas).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from .settings import AiSettings

EXTRACTIVE_MODEL = "fhirhub-extractive"


@dataclass
class ToolRequest:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class Turn:
    content: str
    tool_calls: list[ToolRequest] = field(default_factory=list)


class ChatProvider(Protocol):
    name: str
    external: bool

    def turn(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Turn: ...

    def stream(self, messages: list[dict[str, Any]]) -> Iterator[str]: ...

    def stream_turn(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], stream: bool
    ) -> Iterator[str | Turn]: ...


class ModelUnavailable(Exception):
    """The model server failed or answered nonsense."""


class OpenAIProvider:
    """The configured model, through the ``openai`` client (any compatible server)."""

    def __init__(self, settings: AiSettings) -> None:
        import openai

        self.name = str(settings.model)
        self.external = settings.is_external()
        self._client = openai.OpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key(),
            timeout=settings.timeout_s,
            max_retries=1,
        )
        # Messages and tools are plain dicts in the wire format (they come from clients and
        # from the hub's tools), not the library's TypedDicts.
        self._completions: Any = self._client.chat.completions

    def turn(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Turn:
        import openai

        try:
            response = self._completions.create(
                model=self.name, messages=messages, **({"tools": tools} if tools else {})
            )
        except openai.OpenAIError as error:
            raise ModelUnavailable(str(error)) from error
        if not response.choices:
            raise ModelUnavailable("The model answered no choices")
        message = response.choices[0].message
        calls = []
        for call in message.tool_calls or []:
            function = getattr(call, "function", None)
            if function is None:
                continue
            slot = {"id": call.id, "name": function.name, "arguments": function.arguments}
            calls.append(_request(slot))
        return Turn(message.content or "", calls)

    def stream(self, messages: list[dict[str, Any]]) -> Iterator[str]:
        for piece in self.stream_turn(messages, [], True):
            if isinstance(piece, str):
                yield piece

    def stream_turn(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], stream: bool
    ) -> Iterator[str | Turn]:
        """Text deltas as the model writes them, then the whole :class:`Turn` (its tool
        calls assembled from their streamed fragments). ``stream`` False: one request, the
        content as a single delta."""
        import openai

        if not stream:
            turn = self.turn(messages, tools)
            if turn.content:
                yield turn.content
            yield turn
            return
        content: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        try:
            chunks = self._completions.create(
                model=self.name,
                messages=messages,
                stream=True,
                **({"tools": tools} if tools else {}),
            )
            for chunk in chunks:
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta
                if delta.content:
                    content.append(delta.content)
                    yield delta.content
                for call in delta.tool_calls or []:
                    slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                    slot["id"] = call.id or slot["id"]
                    if call.function is not None:
                        slot["name"] += call.function.name or ""
                        slot["arguments"] += call.function.arguments or ""
        except openai.OpenAIError as error:
            raise ModelUnavailable(str(error)) from error
        yield Turn("".join(content), [_request(slot) for _, slot in sorted(calls.items())])


def _request(slot: dict[str, str]) -> ToolRequest:
    try:
        arguments = json.loads(slot["arguments"] or "{}")
    except json.JSONDecodeError:
        arguments = {"_unparsed": slot["arguments"]}
    return ToolRequest(slot["id"], slot["name"], arguments)


class ExtractiveProvider:
    """No model: the answer is assembled from the tool results in the conversation, quoted
    with their citations. It never asks for tools (the router has run them) and it never
    writes anything the record does not say."""

    name = EXTRACTIVE_MODEL
    external = False

    def turn(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Turn:
        return Turn("".join(self.stream(messages)))

    def stream(self, messages: list[dict[str, Any]]) -> Iterator[str]:
        lines: list[str] = []
        for message in messages:
            if message.get("role") != "tool":
                continue
            try:
                result = json.loads(message.get("content") or "{}")
            except json.JSONDecodeError:
                continue
            for step in result.get("recommendations") or []:
                lines.append(
                    f"{result.get('title')} (version {result.get('version')}): "
                    f"{step['title']}: {step['description']}"
                )
            if result.get("trace") is not None and not result.get("recommendations"):
                lines.append(f"{result.get('title')}: no action applies (inputs missing?)")
            for entry in result.get("entries") or []:
                lines.append(f"{entry['summary']} [{entry['reference']}]")
            for chunk in (result.get("chunks") or [])[:3]:
                text = re.sub(r"\s+", " ", chunk["text"]).strip()
                lines.append(f"{text[:300]} [{chunk['citation']}]")
        if not lines:
            yield "The record holds nothing that answers this question."
            return
        yield "From the record:\n"
        for line in dict.fromkeys(lines):
            yield f"- {line}\n"

    def stream_turn(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], stream: bool
    ) -> Iterator[str | Turn]:
        text: list[str] = []
        for piece in self.stream(messages):
            text.append(piece)
            yield piece
        yield Turn("".join(text))


def provider_for(settings: AiSettings) -> ChatProvider:
    if settings.model_configured():
        return OpenAIProvider(settings)
    return ExtractiveProvider()
