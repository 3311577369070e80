"""What the store asks a terminology service while searching (it has none of its own).

Quantities: a search ``value-quantity=ge5.5|http://unitsofmeasure.org|mmol/L`` also matches
values stored in another UCUM unit of the same dimension (``umol/L``) when the registry's
``quantity_units`` resolver (the ``search_quantity_units`` hook) gives the conversion: the
store lists the UCUM units stored for the parameter and compares each one's values with the
searched value converted into it. Units with no defined conversion never match.

The token modifiers ``:in``, ``:not-in`` (value set membership), ``:below`` and ``:above``
(subsumption) (http://hl7.org/fhir/R4/search.html#token) need a code system's hierarchy or a
value set's expansion. The store describes each such value as a :class:`TokenModifier` and
asks the registry's ``token_modifiers`` resolver (the hub wires it to the
``search_token_codes`` hook) for the codes it stands for, then matches them against the token
index like any ``system|code`` list. A resolver whose codes are rows of tables in the hub's
own database (a closure table of a code system's hierarchy, an expansion) answers with
:class:`CodeQuery` statements instead of a list: the store then joins its token index to them
in the one search statement, so a modifier standing for 20,000 codes costs no 20,000-item list
and no limit on their number. Without a resolver, or when the resolver answers None, the
modifier is refused as not supported rather than silently matching nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The token modifiers a resolver answers.
TERMINOLOGY_MODIFIERS = frozenset({"in", "not-in", "below", "above"})


@dataclass(frozen=True)
class TokenModifier:
    """One value of a token parameter with a terminology modifier.

    ``value`` is as sent (unescaped): a ValueSet canonical url for ``in``/``not-in``,
    ``system|code`` (or a bare code) for ``below``/``above``.
    """

    resource_type: str | None
    parameter: str
    modifier: str
    value: str


@dataclass(frozen=True)
class CodeQuery:
    """Codes of one system given as SQL: ``select`` is a one-column SQLAlchemy ``SELECT`` of
    codes over tables of the hub's own database (the store's engine), evaluated inside the
    search statement (``index_token.code IN (select)``). ``system`` None matches the codes in
    any system."""

    system: str | None
    select: Any


@dataclass(frozen=True)
class TokenCodes:
    """The codes a modifier value stands for: ``(system, code)`` pairs (system None matches a
    code of any system) and :class:`CodeQuery` statements; a value matches a token in either.
    No codes and no queries is an answer: nothing matches (``:not-in`` then matches
    everything). Listed codes are bounded (10,000 per search); queries are not."""

    codes: tuple[tuple[str | None, str], ...] = ()
    queries: tuple[CodeQuery, ...] = ()


#: Answers a :class:`TokenModifier`, or None when it cannot (unknown system or value set is a
#: ``FhirError`` it raises instead, so that the client learns why).
TokenModifierResolver = Callable[[TokenModifier], "TokenCodes | None"]


#: The system of UCUM units in FHIR Quantities.
UCUM_SYSTEM = "http://unitsofmeasure.org"


@dataclass(frozen=True)
class UnitConversion:
    """``value in the stored unit = value in the searched unit * factor + offset``."""

    factor: float
    offset: float = 0.0

    def apply(self, value: float) -> float:
        return value * self.factor + self.offset


#: ``(searched UCUM code, stored UCUM codes) -> {stored code: conversion}`` for the stored
#: codes that convert (the searched code itself included); a malformed searched code is a
#: ``FhirError`` 400.
QuantityUnitResolver = Callable[[str, Sequence[str]], Mapping[str, UnitConversion]]
