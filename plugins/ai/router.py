"""The prompt router: structured patterns that pick tools before any model is called.

"What is the latest potassium?" becomes an Observation search by LOINC code, newest first;
"current medications" an active MedicationRequest search. The routed results go into the
model's context (as tool calls it made), so a small or absent model still answers from the
record, and every routed question is answered the same way each time. Anything else retrieves
passages (``search_documents``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .vocabulary import LAB_CODES


@dataclass(frozen=True)
class Route:
    tool: str
    arguments: dict[str, Any]
    why: str


_LATEST = re.compile(r"\b(latest|last|most recent|newest|current|recent)\b")
_TREND = re.compile(r"\b(trend|history|over time|all|previous|values)\b")
_PATTERNS: tuple[tuple[re.Pattern[str], str, dict[str, str], str], ...] = (
    (
        re.compile(r"\b(medications?|meds|drugs?|prescriptions?|taking)\b"),
        "MedicationRequest",
        {"status": "active"},
        "medications",
    ),
    (re.compile(r"\ballerg"), "AllergyIntolerance", {}, "allergies"),
    (
        re.compile(r"\b(problems?|conditions?|diagnos[ie]s|problem list)\b"),
        "Condition",
        {"clinical-status": "active"},
        "active problems",
    ),
    (re.compile(r"\b(immuni[sz]ations?|vaccin\w*)\b"), "Immunization", {}, "immunizations"),
    (re.compile(r"\b(procedures?|operations?|surgery|surgeries)\b"), "Procedure", {}, "procedures"),
    (re.compile(r"\b(encounters?|visits?|admissions?)\b"), "Encounter", {}, "encounters"),
)
_LABS = sorted(LAB_CODES, key=len, reverse=True)


def lab_named(text: str) -> str | None:
    """The longest laboratory or vital-sign name in ``text`` (lower case), if any."""
    for name in _LABS:
        if re.search(rf"\b{re.escape(name)}\b", text):
            return name
    return None


_PATHWAY = re.compile(r"\b(pathway|protocol|algorithm|decision tree)\b")


def route(question: str, pathway_names: list[str] | None = None) -> list[Route]:
    """The tool calls a question's patterns ask for (the retrieval fallback included).
    ``pathway_names``: lower-case words naming the available pathways."""
    text = question.lower()
    routes: list[Route] = []
    if _PATHWAY.search(text):
        named = next((n for n in pathway_names or [] if n and n in text), None)
        if named is not None:
            routes.append(Route("run_pathway", {"name": named}, f"the {named} pathway"))
        else:
            routes.append(Route("list_pathways", {}, "pathways available"))
    lab = lab_named(text)
    if lab is not None:
        codes = ",".join(f"http://loinc.org|{code}" for code in LAB_CODES[lab])
        count = "10" if _TREND.search(text) else "1"
        routes.append(
            Route(
                "fhir_search",
                {
                    "resource_type": "Observation",
                    "params": {"code": codes, "_sort": "-date", "_count": count},
                },
                f"{lab}: {'recent values' if count != '1' else 'latest value'} by LOINC code",
            )
        )
    for pattern, resource_type, params, why in _PATTERNS:
        if pattern.search(text):
            routes.append(
                Route(
                    "fhir_search",
                    {"resource_type": resource_type, "params": {**params, "_count": "20"}},
                    why,
                )
            )
    routes.append(Route("search_documents", {"query": question}, "passages of the record"))
    return routes


def asks_latest(question: str) -> bool:
    return bool(_LATEST.search(question.lower()))
