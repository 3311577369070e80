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

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from fhirhub.fhir_store.errors import FhirError
from fhirhub.fhir_store.search.definitions import (
    ABSTRACT_BASES,
    DEFINITIONS,
    PARAM_TYPES,
    RESOURCE_TYPES_FILE,
    SEARCH_PARAMETERS_FILE,
    SearchParameterDef,
    _definition,
    _for_type,
    _official_tables,
    _types_of,
    expression_for,
    split_union,
    term_root,
)
from fhirhub.fhir_store.search.extract import compile_check
from fhirhub.fhir_store.search.terminology import QuantityUnitResolver, TokenModifierResolver

__all__ = [
    "ABSTRACT_BASES",
    "DEFINITIONS",
    "PARAM_TYPES",
    "RESOURCE_TYPES_FILE",
    "SEARCH_PARAMETERS_FILE",
    "SearchParameterDef",
    "SearchParameterRegistry",
    "default_registry",
    "expression_for",
    "split_union",
    "term_root",
]


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
        #: Answers the terminology modifiers of token parameters (``:in``, ``:below``...);
        #: set by the hub when a plugin implements ``search_token_codes``
        #: (:mod:`fhirhub.fhir_store.search.terminology`).
        self.token_modifiers: TokenModifierResolver | None = None
        #: Converts UCUM units for quantity search; set by the hub when a plugin implements
        #: ``search_quantity_units``.
        self.quantity_units: QuantityUnitResolver | None = None

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
