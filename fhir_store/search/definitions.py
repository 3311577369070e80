"""Search parameter definitions: the R4 registry's data and the per-type expressions.

Kept apart from the registry (:mod:`.parameters`), which compiles expressions through
:mod:`.extract` when a parameter is added, so that the compiler can use these definitions
without importing the registry back.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DEFINITIONS = Path(__file__).resolve().parent.parent / "definitions"
SEARCH_PARAMETERS_FILE = DEFINITIONS / "search-parameters.json"
RESOURCE_TYPES_FILE = DEFINITIONS / "r4-resource-types.json"

#: The search parameter types of http://hl7.org/fhir/R4/valueset-search-param-type.html.
PARAM_TYPES = frozenset(
    {"number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"}
)

#: Abstract bases whose parameters apply to every resource type.
ABSTRACT_BASES = ("Resource", "DomainResource")


@dataclass(frozen=True)
class SearchParameterDef:
    """One search parameter as it applies to one resource type.

    ``expression`` is only the part of the official FHIRPath expression that applies to the
    resource type the definition was looked up for (None for parameters without an expression:
    ``_text``, ``_content``, ``_query`` and ``special`` ones). ``components`` lists a composite's
    parts as (definition url, expression relative to the composite's value).
    """

    code: str
    type: str
    base: tuple[str, ...]
    expression: str | None
    url: str
    target: tuple[str, ...] = ()
    components: tuple[tuple[str, str], ...] = ()
    modifiers: tuple[str, ...] = ()
    comparators: tuple[str, ...] = ()
    multiple_or: bool | None = None
    multiple_and: bool | None = None
    name: str = ""
    description: str = field(default="", repr=False, compare=False)

    @property
    def supported(self) -> bool:
        """Whether searches can use it: ``special`` parameters and those without an
        expression (``_text``, ``_content``, ``_query``; ``_id`` and ``_lastUpdated`` are read
        from the resource's own columns) are not."""
        return self.type != "special" and (
            self.expression is not None or self.code in ("_id", "_lastUpdated")
        )


def split_union(expression: str) -> list[str]:
    """Split a FHIRPath expression on its top-level ``|`` operators (not inside parentheses,
    brackets or string literals)."""
    terms: list[str] = []
    depth = 0
    quote = ""
    start = 0
    for i, char in enumerate(expression):
        if quote:
            if char == quote and expression[i - 1] != "\\":
                quote = ""
        elif char in "'\"`":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "|" and depth == 0:
            terms.append(expression[start:i].strip())
            start = i + 1
    terms.append(expression[start:].strip())
    return [t for t in terms if t]


def term_root(term: str) -> str:
    """The identifier a union term starts with (``(Observation.value as Quantity)`` ->
    ``Observation``); for official expressions this is the resource type the term applies to."""
    text = term.lstrip("( \t\n")
    end = 0
    while end < len(text) and (text[end].isalnum() or text[end] == "_"):
        end += 1
    return text[:end]


def _reroot(term: str, root: str, resource_type: str) -> str:
    prefix_len = len(term) - len(term.lstrip("( \t\n"))
    return term[:prefix_len] + resource_type + term[prefix_len + len(root) :]


def expression_for(expression: str | None, base: Iterable[str], resource_type: str) -> str | None:
    """The part of ``expression`` that applies to ``resource_type``.

    Terms rooted at the resource type are kept; terms rooted at ``Resource``/``DomainResource``
    are re-rooted onto it; terms rooted at another base are dropped. A term rooted at something
    that is not one of the bases (a relative expression in a custom SearchParameter) is kept.
    """
    if expression is None:
        return None
    bases = set(base)
    kept: list[str] = []
    for term in split_union(expression):
        root = term_root(term)
        if root == resource_type:
            kept.append(term)
        elif root in ABSTRACT_BASES:
            kept.append(_reroot(term, root, resource_type))
        elif root not in bases:
            kept.append(term)
    return " | ".join(kept) if kept else None


def _definition(resource: Mapping[str, Any]) -> SearchParameterDef:
    """Parse a SearchParameter resource into its unsplit definition (expression for all bases)."""
    return SearchParameterDef(
        code=resource["code"],
        type=resource["type"],
        base=tuple(resource.get("base") or ()),
        expression=resource.get("expression") or None,
        url=resource.get("url") or "",
        target=tuple(resource.get("target") or ()),
        components=tuple(
            (c.get("definition", ""), c.get("expression", ""))
            for c in resource.get("component") or ()
        ),
        modifiers=tuple(resource.get("modifier") or ()),
        comparators=tuple(resource.get("comparator") or ()),
        multiple_or=resource.get("multipleOr"),
        multiple_and=resource.get("multipleAnd"),
        name=resource.get("name") or "",
        description=resource.get("description") or "",
    )


@dataclass(frozen=True)
class _Parsed:
    resource_types: tuple[str, ...]
    definitions: tuple[SearchParameterDef, ...]


@functools.cache
def _parsed() -> _Parsed:
    bundle = json.loads(SEARCH_PARAMETERS_FILE.read_bytes())
    definitions = tuple(_definition(entry["resource"]) for entry in bundle["entry"])
    listed = json.loads(RESOURCE_TYPES_FILE.read_bytes())
    # Written by tools/derive_validation_data.py as {"r4": [...], ...} (older copies: a list).
    types = set(listed["r4"] if isinstance(listed, dict) else listed)
    for definition in definitions:
        types.update(b for b in definition.base if b not in ABSTRACT_BASES)
    return _Parsed(tuple(sorted(types)), definitions)


@functools.cache
def _official_tables() -> tuple[
    dict[str, dict[str, SearchParameterDef]], dict[str, SearchParameterDef]
]:
    parsed = _parsed()
    by_type: dict[str, dict[str, SearchParameterDef]] = {t: {} for t in parsed.resource_types}
    by_url: dict[str, SearchParameterDef] = {}
    for definition in parsed.definitions:
        by_url[definition.url] = definition
        for resource_type in _types_of(definition.base, parsed.resource_types):
            by_type[resource_type][definition.code] = _for_type(definition, resource_type)
    return by_type, by_url


def _types_of(base: Iterable[str], all_types: Iterable[str]) -> list[str]:
    bases = list(base)
    if any(b in ABSTRACT_BASES for b in bases):
        return list(all_types)
    return bases


def _for_type(definition: SearchParameterDef, resource_type: str) -> SearchParameterDef:
    return replace(
        definition,
        expression=expression_for(definition.expression, definition.base, resource_type),
    )
