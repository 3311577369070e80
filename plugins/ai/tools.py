"""The tools the model (and the router, and MCP clients) call. Each runs with the caller's
access through the SDK; a conversation about one patient keeps every tool on that patient.

A tool returns a :class:`ToolResult`: JSON for the model and the references it drew on, which
become the answer's sources.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fhirhub.sdk import (
    Access,
    FhirError,
    Hub,
    acting_as,
    call_hook,
    forbidden,
    invalid,
    read,
    search,
)

from .index import Source, index_of
from .render import INDEXED_TYPES, patient_of, summary_line

#: What ``fhir_search`` may ask for: the clinical types the assistant understands.
SEARCHABLE = INDEXED_TYPES
#: Of those, the ones searched within the conversation's patient (``patient=``).
PATIENT_TYPES = INDEXED_TYPES - {"Patient"}
MAX_RESULTS = 20


@dataclass
class ToolResult:
    content: dict[str, Any]
    references: list[str] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)


@dataclass
class ToolContext:
    """Who asks and about whom: every tool call of one conversation shares it."""

    hub: Hub
    access: Access
    patient: str | None  # the conversation's patient (a chart, or the token's patient)
    top_k: int = 5


def fhir_search(ctx: ToolContext, resource_type: str, params: dict[str, Any]) -> ToolResult:
    if resource_type not in SEARCHABLE:
        raise invalid(f"fhir_search supports {', '.join(sorted(SEARCHABLE))}")
    query = {str(k): str(v) for k, v in (params or {}).items() if not str(k).startswith("_")}
    if ctx.patient is not None:
        if resource_type == "Patient":
            query = {"_id": ctx.patient}
        else:
            query["patient"] = f"Patient/{ctx.patient}"
    query["_count"] = str(min(int(str((params or {}).get("_count", MAX_RESULTS))), MAX_RESULTS))
    if sort := (params or {}).get("_sort"):
        query["_sort"] = str(sort)
    with acting_as(ctx.access):
        found = search(ctx.hub, resource_type, query)
    refs = [f"{r['resourceType']}/{r['id']}" for r in found]
    return ToolResult(
        {
            "resourceType": resource_type,
            "count": len(found),
            "entries": [
                {"reference": ref, "summary": summary_line(r)}
                for ref, r in zip(refs, found, strict=True)
            ],
        },
        refs,
    )


def fhir_read(ctx: ToolContext, resource_type: str, id: str) -> ToolResult:
    with acting_as(ctx.access):
        resource = read(ctx.hub, resource_type, id)
    about = patient_of(resource)
    if ctx.patient is not None and about is not None and about != ctx.patient:
        raise forbidden("That resource is about another patient than this conversation's")
    ref = f"{resource_type}/{id}"
    return ToolResult({"reference": ref, "summary": summary_line(resource)}, [ref])


def search_documents(ctx: ToolContext, query: str) -> ToolResult:
    sources = index_of(ctx.hub).search(str(query)[:500], ctx.access, ctx.patient, ctx.top_k)
    return ToolResult(
        {"chunks": [{"citation": s.citation, "text": s.text} for s in sources]},
        [s.reference for s in sources],
        sources,
    )


def run_pathway(ctx: ToolContext, name: str) -> ToolResult:
    from . import pathways

    plan = pathways.find(ctx, name)
    result = pathways.run(ctx, plan)
    refs = [i["reference"] for i in result["inputs"].values() if i["reference"]]
    if (plan.get("meta") or {}).get("versionId"):
        refs.insert(0, result["pathway"])  # a stored PlanDefinition (the examples are not)
    return ToolResult(result, refs)


def list_pathways(ctx: ToolContext) -> ToolResult:
    from . import pathways

    return ToolResult(
        {
            "pathways": [
                {"name": p.get("name"), "title": p.get("title"), "version": p.get("version")}
                for p in pathways.available(ctx)
            ]
        }
    )


def _outbound_terms(ctx: ToolContext, text: str) -> str:
    """Search terms as they may leave the hub: the patient's identifiers removed."""
    from .redact import Redactor

    patient = None
    if ctx.patient:
        try:
            with acting_as(ctx.access):
                patient = read(ctx.hub, "Patient", ctx.patient)
        except FhirError:
            patient = None
    return Redactor(patient).text(str(text))[:300]


def pubmed_search(ctx: ToolContext, query: str) -> ToolResult:
    from .literature import pubmed
    from .settings import settings_of

    base = settings_of(ctx.hub).pubmed_base_url
    if not base:
        raise invalid("PubMed is not configured")
    return ToolResult({"articles": pubmed(base, _outbound_terms(ctx, query))})


def trials_search(ctx: ToolContext, query: str) -> ToolResult:
    from .literature import clinical_trials
    from .settings import settings_of

    base = settings_of(ctx.hub).clinicaltrials_base_url
    if not base:
        raise invalid("ClinicalTrials.gov is not configured")
    return ToolResult({"studies": clinical_trials(base, _outbound_terms(ctx, query))})


def medlineplus_lookup(ctx: ToolContext, code: str, system: str = "icd10") -> ToolResult:
    from .literature import medlineplus
    from .settings import settings_of

    base = settings_of(ctx.hub).medlineplus_base_url
    if not base:
        raise invalid("MedlinePlus Connect is not configured")
    return ToolResult({"topics": medlineplus(base, _outbound_terms(ctx, code), system)})


#: Tool name -> the setting that must be set for the tool to be offered.
NEEDS_SETTING = {
    "pubmed_search": "pubmed_base_url",
    "trials_search": "clinicaltrials_base_url",
    "medlineplus_lookup": "medlineplus_base_url",
}


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[..., ToolResult]

    def openai_schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            "fhir_search",
            "Search the patient's FHIR record. resource_type: one of "
            + ", ".join(sorted(SEARCHABLE))
            + ". params: FHIR search parameters (code, status, date, _sort=-date, _count).",
            {
                "type": "object",
                "properties": {
                    "resource_type": {"type": "string"},
                    "params": {"type": "object", "additionalProperties": {"type": "string"}},
                },
                "required": ["resource_type"],
            },
            fhir_search,
        ),
        Tool(
            "fhir_read",
            "Read one FHIR resource by type and id.",
            {
                "type": "object",
                "properties": {"resource_type": {"type": "string"}, "id": {"type": "string"}},
                "required": ["resource_type", "id"],
            },
            fhir_read,
        ),
        Tool(
            "search_documents",
            "Retrieve passages from the patient's record, notes, reports and the hospital's "
            "guideline documents, with citations.",
            {
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
            },
            search_documents,
        ),
        Tool(
            "list_pathways",
            "List the decision pathways (PlanDefinitions) that run_pathway can run.",
            {"type": "object", "properties": {}},
            list_pathways,
        ),
        Tool(
            "run_pathway",
            "Run a decision pathway for the patient deterministically; returns the inputs, "
            "the trace of every condition and the recommendations.",
            {
                "type": "object",
                "properties": {"name": {"type": "string"}},
                "required": ["name"],
            },
            run_pathway,
        ),
        Tool(
            "pubmed_search",
            "Search PubMed (NCBI) for articles; send search terms only, never patient details.",
            {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
            pubmed_search,
        ),
        Tool(
            "trials_search",
            "Search ClinicalTrials.gov for studies; send search terms only.",
            {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
            trials_search,
        ),
        Tool(
            "medlineplus_lookup",
            "Patient-education topics from MedlinePlus for a code (system: icd10, snomed, "
            "rxnorm or loinc).",
            {
                "type": "object",
                "properties": {"code": {"type": "string"}, "system": {"type": "string"}},
                "required": ["code"],
            },
            medlineplus_lookup,
        ),
    )
}


def offered(hub: Hub) -> list[Tool]:
    """The tools this hub offers: its own (the literature tools only when configured), then
    those other plugins contribute through the ``ai_tools`` hook."""
    from .settings import settings_of

    settings = settings_of(hub)
    own = [
        tool
        for tool in TOOLS.values()
        if tool.name not in NEEDS_SETTING or getattr(settings, NEEDS_SETTING[tool.name])
    ]
    names = {tool.name for tool in own}
    for _plugin, specs in call_hook(hub, "ai_tools", hub=hub):
        for spec in specs if isinstance(specs, list) else [specs]:
            tool = _contributed(spec)
            if tool is not None and tool.name not in names:
                own.append(tool)
                names.add(tool.name)
    return own


def _contributed(spec: Any) -> Tool | None:
    """A tool of another plugin (the ``ai_tools`` hook's contract), or None when malformed."""
    if not isinstance(spec, dict) or not callable(spec.get("run")):
        return None
    name = str(spec.get("name") or "")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,63}", name):
        return None
    run = spec["run"]

    def call(ctx: ToolContext, **arguments: Any) -> ToolResult:
        with acting_as(ctx.access):
            result = run(arguments, ctx.patient)
        if not isinstance(result, dict):
            raise invalid(f"The tool {name} answered something other than a JSON object")
        references = [str(r) for r in result.get("references") or []]
        return ToolResult(result, references)

    parameters = spec.get("parameters") or {"type": "object", "properties": {}}
    return Tool(name, str(spec.get("description") or name), parameters, call)


def call_tool(ctx: ToolContext, name: str, arguments: dict[str, Any]) -> ToolResult:
    """Run one tool; a refusal or bad argument becomes the tool's answer, not a failure of the
    whole conversation (the model is told, and may try something else)."""
    tool = next((t for t in offered(ctx.hub) if t.name == name), None)
    if tool is None:
        return ToolResult({"error": f"unknown tool {name!r}"})
    try:
        return tool.run(ctx, **arguments)
    except FhirError as error:
        return ToolResult({"error": error.message, "status": error.status})
    except (TypeError, ValueError) as error:
        return ToolResult({"error": f"bad arguments for {name}: {error}"})
