"""One turn of a conversation, from the caller's question to a checked, cited, recorded
answer:

1. the conversation's patient: the token's own patient, or the chart's (read as the caller);
2. guardrails before the model (:mod:`.policy`): a refused prompt reaches no model;
3. the router (:mod:`.router`) runs its tools, as the caller, into the context;
4. the provider (model, or extractive) answers, calling tools for up to ``max_tool_rounds``;
   everything sent to an external model passes the :class:`.redact.Redactor`;
5. guardrails after the model (:mod:`.claims`), sentence by sentence, as the text streams;
6. sources and the AI label appended; question, answer and Provenance written (:mod:`.record`).

:meth:`ChatTurn.events` yields the turn as it happens (text deltas, tool calls, the end);
the HTTP layer turns them into an OpenAI response or SSE chunks.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fhirhub.sdk import Access, FhirError, Hub, acting_as, forbidden, invalid, new_id, read

from . import __version__
from .claims import AI_LABEL, Finding, check_sentence
from .facts import RecordFacts, gather
from .index import Source
from .policy import check_prompt, is_dose_question
from .provider import EXTRACTIVE_MODEL, ChatProvider, ModelUnavailable, ToolRequest
from .record import prompt_hash, write_exchange
from .redact import Redactor
from .router import route
from .settings import AiSettings
from .tools import ToolContext, ToolResult, call_tool, offered

log = logging.getLogger("fhirhub.ai")

SYSTEM_PROMPT = (
    "You are a clinical assistant inside a FHIR server. Answer only from the tool results and "
    "passages given; cite each fact with its reference in square brackets, e.g. "
    "[Observation/123]. If the record does not answer the question, say so. Never state a "
    "diagnosis as fact; report what is recorded. Be brief."
)


@dataclass
class ChatRequest:
    messages: list[dict[str, Any]]
    patient: str | None = None
    conversation: str | None = None
    client_tools: list[dict[str, Any]] = field(default_factory=list)
    stream: bool = False

    @classmethod
    def parse(cls, body: Any) -> ChatRequest:
        if not isinstance(body, dict):
            raise invalid("The body must be a JSON object (an OpenAI chat completion request)")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise invalid("'messages' must be a non-empty list")
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in (
                "system",
                "developer",
                "user",
                "assistant",
                "tool",
            ):
                raise invalid("Each message needs a role: system, user, assistant or tool")
        tools = body.get("tools") or []
        if not isinstance(tools, list):
            raise invalid("'tools' must be a list")
        patient = body.get("patient")
        conversation = body.get("conversation")
        for name, value in (("patient", patient), ("conversation", conversation)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise invalid(f"'{name}' must be a string")
        return cls(messages, patient, conversation, tools, bool(body.get("stream")))


def text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


@dataclass
class Event:
    """``kind``: "text" (a delta), "tool" (a tool ran), "client_tools" (the model asks the
    client's tools), "end" (the turn's summary in ``data``)."""

    kind: str
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)


class ChatTurn:
    def __init__(
        self, hub: Hub, settings: AiSettings, provider: ChatProvider, request: ChatRequest
    ) -> None:
        self.hub = hub
        self.settings = settings
        self.provider = provider
        self.request = request
        self.access: Access = _current()
        self.patient = self._patient()
        self.ctx = ToolContext(hub, self.access, self.patient, settings.top_k)
        self.sources: list[Source] = []
        self.references: list[str] = []
        self.findings: list[Finding] = []
        self.tools_run: list[dict[str, Any]] = []
        #: The last messages sent to the model, exactly (their hash goes in the Provenance).
        self.sent: list[dict[str, Any]] = []

    def _patient(self) -> str | None:
        wanted = self.request.patient
        if self.access.patient is not None:
            if wanted is not None and wanted != self.access.patient:
                raise forbidden("This token is limited to its own patient")
            return self.access.patient
        if wanted is not None:
            with acting_as(self.access):
                read(self.hub, "Patient", wanted)  # 404 unless the caller may read it
        return wanted

    # -- the turn ----------------------------------------------------------------------------
    def events(self) -> Iterator[Event]:
        question = text_of(self._last_user())
        # The record's facts serve the dose rule and the claim checks; the extractive
        # provider only quotes the record, so its answers need no claim check.
        facts = None
        if self.patient is not None and (
            self.provider.name != EXTRACTIVE_MODEL or is_dose_question(question)
        ):
            facts = gather(self.hub, self.access, self.patient)
        verdict = check_prompt(question, verified_weight=bool(facts and facts.verified_weight))
        if verdict is not None:
            answer = f"{verdict.message}\n\n{AI_LABEL}"
            yield Event("text", answer)
            yield self._end(question, answer, refused=verdict.__dict__)
            return
        messages = self._context(question)
        for event in self._model(messages, facts):
            if event.kind == "end":
                yield self._end(question, event.text, refused=None)
            else:
                yield event

    def _last_user(self) -> dict[str, Any]:
        for message in reversed(self.request.messages):
            if message.get("role") == "user":
                return dict(message)
        raise invalid("The conversation has no user message")

    def _context(self, question: str) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT}]
        if self.patient:
            messages.append(
                {"role": "system", "content": f"The conversation is about Patient/{self.patient}."}
            )
        messages.extend(m for m in self.request.messages if m.get("role") != "system")
        calls: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        for number, routed in enumerate(route(question, self._pathway_words(question))):
            call_id = f"route-{number}"
            result = self._run(routed.tool, routed.arguments, why=routed.why)
            calls.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": routed.tool, "arguments": json.dumps(routed.arguments)},
                }
            )
            results.append(
                {"role": "tool", "tool_call_id": call_id, "content": json.dumps(result.content)}
            )
        messages.append({"role": "assistant", "content": None, "tool_calls": calls})
        messages.extend(results)
        return messages

    def _pathway_words(self, question: str) -> list[str]:
        """Words naming the available pathways ("hyperkalaemia"), when the question asks
        for a pathway at all."""
        if not any(w in question.lower() for w in ("pathway", "protocol", "algorithm", "tree")):
            return []
        from .pathways import available

        words: list[str] = []
        for plan in available(self.ctx):
            title = str(plan.get("title") or plan.get("name") or "").lower()
            words.extend(w for w in re.findall(r"[a-z]{5,}", title) if w != "pathway")
        return words

    def _run(self, name: str, arguments: dict[str, Any], *, why: str = "") -> ToolResult:
        result = call_tool(self.ctx, name, arguments)
        self.references.extend(result.references)
        self.sources.extend(result.sources)
        self.tools_run.append(
            {
                "name": name,
                "arguments": arguments,
                "why": why or "asked by the model",
                "references": result.references,
                "error": result.content.get("error"),
            }
        )
        return result

    def _outbound(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """What may leave the hub: redacted when the model is external."""
        if not self.provider.external:
            return messages
        patient: dict[str, Any] | None = None
        if self.patient:
            with acting_as(self.access):
                patient = read(self.hub, "Patient", self.patient)
        return Redactor(patient).messages(messages)

    def _model(self, messages: list[dict[str, Any]], facts: RecordFacts | None) -> Iterator[Event]:
        hub_tools = [tool.openai_schema() for tool in offered(self.hub)]
        client_names = {
            str((t.get("function") or {}).get("name")) for t in self.request.client_tools
        }
        try:
            for round_no in range(self.settings.max_tool_rounds + 1):
                tools = hub_tools + self.request.client_tools
                if round_no == self.settings.max_tool_rounds:
                    tools = []  # the last round must answer
                turn = None
                pending = ""
                answer: list[str] = []
                self.sent = self._outbound(messages)
                for piece in self.provider.stream_turn(self.sent, tools, self.request.stream):
                    if isinstance(piece, str):
                        pending += piece
                        ready, pending = _complete_sentences(pending)
                        for sentence in ready:
                            shown = self._checked(sentence, facts)
                            answer.append(shown)
                            yield Event("text", shown)
                    else:
                        turn = piece
                if turn is not None and turn.tool_calls:
                    asked_client = [c for c in turn.tool_calls if c.name in client_names]
                    if asked_client:
                        yield Event("client_tools", data={"calls": asked_client})
                        return
                    messages = messages + self._tool_round(turn.tool_calls, turn.content)
                    for call in turn.tool_calls:
                        yield Event("tool", data={"name": call.name, "arguments": call.arguments})
                    continue
                if pending.strip():
                    shown = self._checked(pending, facts)
                    answer.append(shown)
                    yield Event("text", shown)
                yield Event("end", "".join(answer))
                return
        except ModelUnavailable as error:
            log.warning("The model failed: %s", error)
            text = (
                "The model could not be reached, so there is no answer. "
                "The tools' findings are listed as sources."
            )
            yield Event("text", text)
            yield Event("end", text)

    def _tool_round(self, calls: list[ToolRequest], content: str) -> list[dict[str, Any]]:
        added: list[dict[str, Any]] = [
            {
                "role": "assistant",
                "content": content or None,
                "tool_calls": [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
                    }
                    for c in calls
                ],
            }
        ]
        for call in calls:
            result = self._run(call.name, call.arguments)
            added.append(
                {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result.content)}
            )
        return added

    def _checked(self, sentence: str, facts: RecordFacts | None) -> str:
        stripped = sentence.strip()
        if not stripped or self.provider.name == EXTRACTIVE_MODEL:
            return sentence  # the extractive provider's quotations are the record itself
        shown, found = check_sentence(stripped, facts)
        self.findings.extend(found)
        return sentence.replace(stripped, shown)

    def _end(
        self,
        question: str,
        answer: str,
        *,
        refused: dict[str, Any] | None,
    ) -> Event:
        references = list(dict.fromkeys(self.references))
        trailer = ""
        if refused is None:
            if references:
                trailer += "\n\nSources: " + ", ".join(
                    [s.citation for s in self.sources]
                    + [r for r in references if r not in {s.reference for s in self.sources}]
                )
            trailer += f"\n\n{AI_LABEL}"
        conversation = self.request.conversation or new_id()
        try:
            written = write_exchange(
                self.hub,
                self.access,
                conversation=conversation,
                patient=self.patient,
                question=question,
                answer=answer + trailer,
                model=self.provider.name,
                model_version=__version__,
                prompt_sha256=prompt_hash(self.sent),
                sources=references,
            )
            stored = {
                "question": written.question,
                "answer": written.answer,
                "provenance": written.provenance,
            }
        except FhirError as error:
            log.error("The conversation could not be stored: %s", error.message)
            stored = {"error": error.message}
        return Event(
            "end",
            trailer,
            {
                "conversation": conversation,
                "patient": self.patient,
                "model": self.provider.name,
                "ai_generated": True,
                "refused": refused,
                "sources": [s.as_json() for s in self.sources],
                "references": references,
                "tools": self.tools_run,
                "guardrails": [f.as_json() for f in self.findings],
                "record": stored,
            },
        )


def _complete_sentences(text: str) -> tuple[list[str], str]:
    """Split off the complete sentences (ending in . ! ? or a newline, then space)."""
    ready: list[str] = []
    start = 0
    for index, char in enumerate(text[:-1]):
        if (char in ".!?" and text[index + 1] in " \n") or char == "\n":
            ready.append(text[start : index + 1 if char == "\n" else index + 2])
            start = index + 1 if char == "\n" else index + 2
    return ready, text[start:]


def _current() -> Access:
    from fhirhub.sdk import current_access

    return current_access()
