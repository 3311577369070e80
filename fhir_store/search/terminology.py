"""What the store asks a terminology service while searching (it has none of its own).

The token modifiers ``:in``, ``:not-in`` (value set membership), ``:below`` and ``:above``
(subsumption) (http://hl7.org/fhir/R4/search.html#token) need a code system's hierarchy or a
value set's expansion. The store describes each such value as a :class:`TokenModifier` and
asks the registry's ``token_modifiers`` resolver (the hub wires it to the
``search_token_codes`` hook) for the codes it stands for, then matches them against the token
index like any ``system|code`` list. Without a resolver, or when the resolver answers None,
the modifier is refused as not supported rather than silently matching nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
class TokenCodes:
    """The codes a modifier value stands for: ``(system, code)`` pairs (system None matches a
    code of any system). An empty tuple is an answer: nothing matches (``:not-in`` then
    matches everything)."""

    codes: tuple[tuple[str | None, str], ...]


#: Answers a :class:`TokenModifier`, or None when it cannot (unknown system or value set is a
#: ``FhirError`` it raises instead, so that the client learns why).
TokenModifierResolver = Callable[[TokenModifier], "TokenCodes | None"]
