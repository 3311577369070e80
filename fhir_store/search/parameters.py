"""The SearchParameter registry: which search parameters exist for each resource type.

The official FHIR R4 SearchParameters (http://hl7.org/fhir/R4/searchparameter-registry.html) are
shipped in ``fhir_store/definitions/search-parameters.json`` and parsed once per process. Many
official parameters are shared between resource types and carry one FHIRPath expression that is a
union over all of them (``AllergyIntolerance.code | Condition.code | ...``); the registry splits
such an expression per base so that ``get("Condition", "code").expression`` is just
``Condition.code``. Parameters defined on ``Resource``/``DomainResource`` (``_id``,
``_lastUpdated``, ``_tag``, ``_profile``, ``_security``, ``_source``, ``_text``, ``_content``,
``_query``) apply to every resource type; their expressions are rewritten onto the concrete type
(``Resource.meta.tag`` becomes ``Patient.meta.tag`` for Patient) so that a general FHIRPath
evaluator sees a path rooted at the resource it evaluates.

SearchParameter resources created at run time (``add``) are compiled before they are accepted
(http://hl7.org/fhir/R4/searchparameter.html: a server that cannot evaluate an expression must
refuse the definition rather than silently never match). Each ``default_registry()`` call returns
an independent registry so that run-time additions never leak between hub instances (tests run
several hubs in one process).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fhirhub.fhir_store.errors import FhirError

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


class SearchParameterRegistry:
    """The search parameters known to one hub: the official R4 ones plus run-time additions.

    ``generation`` increases with every change so that caches built from the registry (the
    compiled extractors) know when to rebuild.
    """

    def __init__(
        self,
        by_type: Mapping[str, Mapping[str, SearchParameterDef]],
        by_url: Mapping[str, SearchParameterDef],
    ) -> None:
        self._by_type: dict[str, dict[str, SearchParameterDef]] = {
            t: dict(params) for t, params in by_type.items()
        }
        self._by_url: dict[str, SearchParameterDef] = dict(by_url)
        self.generation = 0

    def get(self, resource_type: str, code: str) -> SearchParameterDef | None:
        params = self._by_type.get(resource_type)
        return None if params is None else params.get(code)

    def for_type(self, resource_type: str) -> Mapping[str, SearchParameterDef]:
        return MappingProxyType(self._by_type.get(resource_type, {}))

    def by_url(self, url: str) -> SearchParameterDef | None:
        return self._by_url.get(url)

    def resource_types(self) -> list[str]:
        return sorted(self._by_type)

    def add(self, sp_resource: Mapping[str, Any]) -> SearchParameterDef:
        """Register a SearchParameter resource (posted at run time) and return its definition.

        Raises ``FhirError`` 400 when the resource is not a usable SearchParameter or its
        expression cannot be compiled. A definition with the same url replaces the earlier one.
        """
        from fhirhub.fhir_store.search.extract import compile_check

        if sp_resource.get("resourceType") != "SearchParameter":
            raise _invalid("not a SearchParameter resource")
        for required in ("code", "type", "base"):
            if not sp_resource.get(required):
                raise _invalid(f"SearchParameter.{required} is required", required)
        if sp_resource["type"] not in PARAM_TYPES:
            raise _invalid(f"unknown search parameter type {sp_resource['type']!r}", "type")
        if not sp_resource.get("url"):
            raise _invalid("SearchParameter.url is required", "url")
        definition = _definition(sp_resource)
        if definition.type != "special" and not definition.expression:
            raise _invalid("SearchParameter.expression is required for this type", "expression")
        unknown = [b for b in definition.base if b not in self._by_type and b not in ABSTRACT_BASES]
        if unknown:
            raise _invalid(f"unknown base resource type(s): {', '.join(unknown)}", "base")
        per_type = {t: _for_type(definition, t) for t in _types_of(definition.base, self._by_type)}
        for resource_type, typed in per_type.items():
            error = compile_check(typed, self, resource_type)
            if error is not None:
                raise _invalid(
                    f"cannot compile expression {typed.expression!r} for {resource_type}: {error}",
                    "expression",
                )
        if definition.url in self._by_url:
            self.remove(definition.url)
        self._by_url[definition.url] = definition
        for resource_type, typed in per_type.items():
            self._by_type[resource_type][typed.code] = typed
        self.generation += 1
        return definition

    def remove(self, url: str) -> bool:
        """Forget the definition with this url; returns whether there was one."""
        definition = self._by_url.pop(url, None)
        if definition is None:
            return False
        for params in self._by_type.values():
            current = params.get(definition.code)
            if current is not None and current.url == url:
                del params[definition.code]
        self.generation += 1
        return True


def _invalid(diagnostics: str, element: str | None = None) -> FhirError:
    expression = (f"SearchParameter.{element}",) if element else ()
    return FhirError(400, diagnostics, code="invalid", expression=expression)


def default_registry() -> SearchParameterRegistry:
    """A new registry holding the official R4 search parameters (parsed once per process)."""
    by_type, by_url = _official_tables()
    return SearchParameterRegistry(by_type, by_url)
