"""Search parameters as SQL conditions over the index tables (http://hl7.org/fhir/R4/search.html).

Each ``name=value`` of a search request becomes one boolean SQL condition on an *owner*: the
``resource_current`` row (or an alias of it) being filtered. Conditions are uncorrelated
``IN``/``NOT IN`` subqueries over one index table (``owner.resource_id IN (SELECT resource_id
FROM index_token WHERE resource_type = ? AND param = ? AND code = ?)``), which SQLite and
PostgreSQL both plan as an index lookup on ``ix_<kind>_lookup`` (``ix_reference_to``, keyed by
the target, for references) followed by a primary-key probe
(or a hash semi-join), whichever side is smaller. A comma-separated value (OR) is an ``OR`` inside
one subquery; repeated parameters (AND) are separate conditions.

* Chaining (``subject:Patient.name=peter``, ``encounter.subject.name=x``) nests the condition of
  the chained parameter on the target type inside an ``IN`` on ``index_reference.target_id``
  (#chaining); an ambiguous target uses every target type that has the chained parameter.
* Reverse chaining (``_has:Observation:patient:code=x``) selects ``target_id`` of the referring
  resources' reference rows (#has), nesting for ``_has:..:_has:..``.
* ``:not`` and ``:missing=true`` are ``NOT IN`` over the owner's universe, so resources with no
  value at all match (#modifiers).
* Composite values (``code-value-quantity=http://loinc.org|8480-6$gt100``) pre-filter the
  composite index on its first component's key and match the remaining components in Python
  (#composite); the matching ids are then an ``IN`` list.

The value semantics of each type are in the ``_token``/``_string``/... methods; prefixes for
ordered types follow #prefix with the range semantics spelled out in ``date_condition``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import (
    BindParameter,
    Column,
    ColumnElement,
    Connection,
    and_,
    bindparam,
    false,
    not_,
    or_,
    select,
    true,
    tuple_,
)

from fhirhub.fhir_store.errors import FhirError
from fhirhub.fhir_store.search.index_tables import (
    index_composite,
    index_date,
    index_number,
    index_quantity,
    index_reference,
    index_string,
    index_token,
    index_uri,
)
from fhirhub.fhir_store.search.normalize import date_range, fold_string, number_range
from fhirhub.fhir_store.search.owner import Owner, current_alias
from fhirhub.fhir_store.search.parameters import SearchParameterDef, SearchParameterRegistry
from fhirhub.fhir_store.search.terminology import (
    TERMINOLOGY_MODIFIERS,
    UCUM_SYSTEM,
    CodeQuery,
    TokenModifier,
)

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")

#: Modifiers each parameter type accepts (http://hl7.org/fhir/R4/search.html#modifiers); a
#: reference parameter also accepts a resource type name as modifier.
MODIFIERS: dict[str, frozenset[str]] = {
    "string": frozenset({"missing", "exact", "contains"}),
    "token": frozenset({"missing", "not", "text", "in", "not-in", "of-type", "above", "below"}),
    "reference": frozenset({"missing", "identifier"}),
    "date": frozenset({"missing"}),
    "number": frozenset({"missing"}),
    "quantity": frozenset({"missing"}),
    "uri": frozenset({"missing", "below", "above"}),
    "composite": frozenset({"missing"}),
}

#: Modifiers that are known to FHIR but not provided here: terminology expansion (``:in``,
#: ``:not-in``, subsumption) needs a terminology service (supported when the registry has a
#: ``token_modifiers`` resolver).
NOT_SUPPORTED_MODIFIERS = frozenset({"in", "not-in", "above", "below"})

#: Resources ``:of-type`` reads to check Identifier.type (those holding the identifier
#: value); a value held by more is refused as too costly rather than read.
MAX_OF_TYPE_CANDIDATES = 1000

#: The most (system, code) pairs one terminology modifier value may stand for.
MAX_TERMINOLOGY_CODES = 10_000

#: "ap" tolerance: 10% of the distance between the searched value and now, for dates
#: (http://hl7.org/fhir/R4/search.html#prefix leaves it to the server), and 10% of the value
#: for numbers and quantities.
APPROXIMATE = 0.1

_MAX_CHAIN_DEPTH = 6

#: Values in one parameter's comma-separated OR list (http://hl7.org/fhir/R4/search.html#combining).
#: Each becomes a term of one SQL ``OR``; SQLite refuses expressions nested deeper than 1,000
#: and a few hundred values reached that (a 500 before this bound).
MAX_OR_VALUES = 100
#: SQL terms one search may build: OR values, summed over every parameter and every target
#: type a chain or ``_has`` fans out to. It keeps the statement (and its planning) bounded
#: whatever the shape of the request.
MAX_SEARCH_TERMS = 1000


class UnknownParameter(Exception):
    """A parameter name the resource type does not define (ignored in lenient handling)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(reason)
        self.name = name
        self.reason = reason


def bad_request(message: str) -> FhirError:
    return FhirError(400, message, code="invalid")


def not_supported(message: str) -> FhirError:
    return FhirError(400, message, code="not-supported")


def too_costly(message: str) -> FhirError:
    """A request over one of the search bounds: 400 with the ``too-costly`` issue code."""
    return FhirError(400, message, code="too-costly")


# --------------------------------------------------------------------------------------------
# Value syntax: escaping (http://hl7.org/fhir/R4/search.html#escaping)


def split_unescaped(text: str, separator: str) -> list[str]:
    """Split on ``separator`` where it is not escaped by a backslash; escapes are kept."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return parts


_ESCAPE = re.compile(r"\\([\\,$|])")


def unescape(text: str) -> str:
    return _ESCAPE.sub(r"\1", text)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def split_prefix(value: str) -> tuple[str, str]:
    """``ge2020`` -> (``ge``, ``2020``); no prefix means ``eq``."""
    head = value[:2]
    if head.isalpha() and head.islower():
        if head not in PREFIXES:
            raise bad_request(f"Unknown search prefix {head!r} in {value!r}")
        return head, value[2:]
    return "eq", value


# --------------------------------------------------------------------------------------------
# Parameter names: code, modifier, chain


@dataclass(frozen=True)
class ParamName:
    code: str
    modifier: str | None
    chain: str | None  # the rest after the first '.', e.g. "name" in "subject:Patient.name"


def parse_name(name: str) -> ParamName:
    head, dot, chain = name.partition(".")
    code, colon, modifier = head.partition(":")
    return ParamName(code, modifier if colon else None, chain if dot else None)


# --------------------------------------------------------------------------------------------
# The owner of a condition


# --------------------------------------------------------------------------------------------
# Date, number and quantity comparisons


def date_condition(
    prefix: str,
    search: tuple[int, int],
    low: ColumnElement[Any],
    high: ColumnElement[Any],
    now_us: int,
) -> ColumnElement[bool]:
    """Compare the target period [low, high] with the searched period [lo, hi] (inclusive
    microseconds), as http://hl7.org/fhir/R4/search.html#prefix defines on ranges:

    eq: the search range fully contains the target; ne: it does not; gt: the range above the
    search value overlaps the target (high > hi); lt: the range below overlaps (low < lo);
    ge: gt or eq; le: lt or eq; sa: the target starts after the search range (low > hi);
    eb: the target ends before it (high < lo); ap: the target overlaps the search range widened
    on each side by 10% of the distance between the searched value and now.
    """
    lo, hi = search
    contained = and_(low >= lo, high <= hi)
    if prefix == "eq":
        return contained
    if prefix == "ne":
        return or_(low < lo, high > hi)
    if prefix == "gt":
        return high > hi
    if prefix == "lt":
        return low < lo
    if prefix == "ge":
        return or_(high > hi, contained)
    if prefix == "le":
        return or_(low < lo, contained)
    if prefix == "sa":
        return low > hi
    if prefix == "eb":
        return high < lo
    gap = int(abs(now_us - (lo + hi) // 2) * APPROXIMATE)
    return and_(low <= hi + gap, high >= lo - gap)


def number_condition(
    prefix: str, search: tuple[float, float, float], value: ColumnElement[Any]
) -> ColumnElement[bool]:
    """Compare a stored number with a searched one and its implied precision
    (http://hl7.org/fhir/R4/search.html#number): ``eq100`` matches [99.5, 100.5)."""
    number, lo, hi = search
    if prefix == "eq":
        return and_(value >= lo, value < hi)
    if prefix == "ne":
        return or_(value < lo, value >= hi)
    if prefix in ("gt", "sa"):
        return value > number
    if prefix in ("lt", "eb"):
        return value < number
    if prefix == "ge":
        return value >= number
    if prefix == "le":
        return value <= number
    spread = abs(number) * APPROXIMATE
    return and_(value >= min(lo, number - spread), value <= max(hi, number + spread))


def _number_matches(prefix: str, search: tuple[float, float, float], value: float) -> bool:
    number, lo, hi = search
    if prefix == "eq":
        return lo <= value < hi
    if prefix == "ne":
        return not lo <= value < hi
    if prefix in ("gt", "sa"):
        return value > number
    if prefix in ("lt", "eb"):
        return value < number
    if prefix == "ge":
        return value >= number
    if prefix == "le":
        return value <= number
    spread = abs(number) * APPROXIMATE
    return min(lo, number - spread) <= value <= max(hi, number + spread)


def _date_matches(prefix: str, search: tuple[int, int], low: int, high: int, now_us: int) -> bool:
    lo, hi = search
    contained = low >= lo and high <= hi
    if prefix == "eq":
        return contained
    if prefix == "ne":
        return not contained
    if prefix == "gt":
        return high > hi
    if prefix == "lt":
        return low < lo
    if prefix == "ge":
        return high > hi or contained
    if prefix == "le":
        return low < lo or contained
    if prefix == "sa":
        return low > hi
    if prefix == "eb":
        return high < lo
    gap = int(abs(now_us - (lo + hi) // 2) * APPROXIMATE)
    return low <= hi + gap and high >= lo - gap


def parse_date(text: str) -> tuple[int, int]:
    # A '+' timezone offset arrives as a space when the client did not percent-encode it.
    period = date_range(text.replace(" ", "+"))
    if period is None:
        raise bad_request(f"Invalid date/time search value {text!r}")
    return period


def parse_number(text: str) -> tuple[float, float, float]:
    try:
        return number_range(text)
    except ValueError:
        raise bad_request(f"Invalid number search value {text!r}") from None


# --------------------------------------------------------------------------------------------
# The predicate builder


class Predicates:
    """Builds the SQL condition for each ``name=value`` of one search request."""

    def __init__(
        self,
        conn: Connection,
        registry: SearchParameterRegistry,
        *,
        base_url: str,
        now_us: int,
        visibility: Any = None,
    ) -> None:
        #: :class:`fhirhub.fhir_store.search.visibility.Visibility` of the caller: chained and
        #: ``_has`` criteria only consider resources the caller may see, so a filter cannot
        #: probe another tenant's or patient's data.
        self.visibility = visibility
        self.conn = conn
        self.registry = registry
        self.base_url = base_url.rstrip("/")
        self.now_us = now_us
        self.sqlite = conn.dialect.name == "sqlite"
        self.known_types = frozenset(registry.resource_types())
        self.terms = 0  # SQL terms built so far (MAX_SEARCH_TERMS)

    def _spend(self, terms: int) -> None:
        self.terms += terms
        if self.terms > MAX_SEARCH_TERMS:
            raise too_costly(
                f"The search is too complex: over {MAX_SEARCH_TERMS} criteria values once OR "
                "lists, repeated parameters and chained target types are counted; narrow it "
                "or split it into several searches"
            )

    # -- entry point

    def condition(self, owner: Owner, name: str, value: str, depth: int = 0) -> ColumnElement[bool]:
        """The condition for one ``name=value`` (a comma-separated OR list) on ``owner``.

        Raises ``UnknownParameter`` for a name the type does not define, ``FhirError`` 400 for
        malformed values, unknown modifiers and unsupported features.
        """
        if depth > _MAX_CHAIN_DEPTH:
            raise bad_request(f"Chain too deep in {name!r}")
        or_values = value.count(",") + 1
        if or_values > MAX_OR_VALUES and len(split_unescaped(value, ",")) > MAX_OR_VALUES:
            raise too_costly(
                f"Search parameter {name!r} has more than {MAX_OR_VALUES} comma-separated "
                "values; split the search"
            )
        self._spend(or_values)
        if name.startswith("_has:"):
            return self._has(owner, name, value, depth)
        parsed = parse_name(name)
        if parsed.code == "_id":
            return self._id(owner, parsed, value)
        if parsed.code == "_lastUpdated":
            return self._last_updated(owner, parsed, value)
        if parsed.code == "_type":
            return self._type(owner, parsed, value)
        definition = self.definition(owner, parsed.code, name)
        if parsed.chain is not None:
            return self._chain(owner, definition, parsed, value, depth)
        if parsed.modifier == "missing":
            return self._missing(owner, definition, value)
        kind = definition.type
        if kind == "reference":
            return self._reference(owner, definition, parsed.modifier, value, depth)
        self._check_modifier(kind, parsed.modifier, name)
        values = [v for v in split_unescaped(value, ",")]
        if not any(v != "" for v in values):
            raise bad_request(f"Search parameter {name!r} has an empty value")
        if kind == "composite":
            return self._composite(owner, definition, values)
        if kind == "token" and parsed.modifier in TERMINOLOGY_MODIFIERS:
            return self._terminology(owner, definition, parsed.modifier, values)
        if kind == "token" and parsed.modifier == "of-type":
            return self._of_type(owner, definition, values)
        build = self._builders()[kind]
        if kind == "quantity" and self.registry.quantity_units is not None:
            build = self._quantity_builder(owner, definition)
        conds = [build(v, parsed.modifier) for v in values if v != ""]
        if kind == "token" and parsed.modifier == "not":
            return not_(self._in_index(owner, index_token, definition.code, or_(*conds)))
        table = _TABLE_OF[kind]
        return self._in_index(owner, table, definition.code, or_(*conds))

    def definition(self, owner: Owner, code: str, name: str) -> SearchParameterDef:
        if owner.resource_type is not None:
            definition = self.registry.get(owner.resource_type, code)
            if definition is None:
                raise UnknownParameter(
                    name, f"Unknown search parameter {code!r} for {owner.resource_type}"
                )
        else:
            types = owner.types or tuple(self.known_types)
            found = [self.registry.get(t, code) for t in types]
            if not found or any(d is None for d in found):
                raise UnknownParameter(
                    name, f"Search parameter {code!r} is not defined for every searched type"
                )
            first = found[0]
            assert first is not None
            if any(d is not None and d.type != first.type for d in found):
                raise bad_request(f"Search parameter {code!r} has different types across types")
            definition = first
        if not definition.supported:
            raise UnknownParameter(name, f"Search parameter {code!r} is not supported")
        return definition

    def _builders(self) -> dict[str, Callable[[str, str | None], ColumnElement[bool]]]:
        return {
            "string": self._string,
            "token": self._token,
            "date": self._date,
            "number": self._number,
            "quantity": self._quantity,
            "uri": self._uri,
        }

    def _check_modifier(self, kind: str, modifier: str | None, name: str) -> None:
        if modifier is None:
            return
        if modifier not in MODIFIERS.get(kind, frozenset()):
            raise bad_request(f"Unknown modifier {modifier!r} for {kind} parameter in {name!r}")
        if kind == "token" and modifier in NOT_SUPPORTED_MODIFIERS:
            if modifier in TERMINOLOGY_MODIFIERS and self.registry.token_modifiers is not None:
                return
            raise not_supported(f"Modifier :{modifier} is not supported (in {name!r})")

    def _terminology(
        self, owner: Owner, definition: SearchParameterDef, modifier: str, values: list[str]
    ) -> ColumnElement[bool]:
        """``:in``/``:not-in``/``:below``/``:above``: the codes the terminology resolver says
        each value stands for, matched in the token index (an OR over the values): listed
        codes as an ``IN`` list, codes given as SQL (:class:`CodeQuery`) as an ``IN`` over
        that statement, joined in the database."""
        resolver = self.registry.token_modifiers
        assert resolver is not None
        by_system: dict[str | None, set[str]] = {}
        queries: list[CodeQuery] = []
        for raw in values:
            if raw == "":
                continue
            request = TokenModifier(owner.resource_type, definition.code, modifier, unescape(raw))
            answer = resolver(request)
            if answer is None:
                raise not_supported(f"Modifier :{modifier} is not supported for {raw!r}")
            for system, code in answer.codes:
                by_system.setdefault(system, set()).add(code)
            queries.extend(answer.queries)
        count = sum(len(codes) for codes in by_system.values())
        if count > MAX_TERMINOLOGY_CODES:
            raise too_costly(
                f":{modifier} stands for {count} codes, over the {MAX_TERMINOLOGY_CODES} a "
                "search matches at once; narrow it"
            )
        self._spend(len(by_system) + len(queries))
        terms: list[ColumnElement[bool]] = []
        listed = [
            (system, index_token.c.code.in_(sorted(codes)))
            for system, codes in sorted(by_system.items(), key=lambda item: item[0] or "")
        ]
        joined = [(query.system, index_token.c.code.in_(query.select)) for query in queries]
        for system, in_codes in listed + joined:
            terms.append(
                in_codes if system is None else and_(index_token.c.system == system, in_codes)
            )
        matched = (
            self._in_index(owner, index_token, definition.code, or_(*terms)) if terms else false()
        )
        return not_(matched) if modifier == "not-in" else matched

    def _of_type(
        self, owner: Owner, definition: SearchParameterDef, values: list[str]
    ) -> ColumnElement[bool]:
        """``identifier:of-type=[type system]|[type code]|[value]`` (#token): an Identifier
        with that value whose ``type`` has that coding. The token index holds the value, not
        the type, so the resources holding the value are found there and their identifiers'
        types checked here (as composites are); the matching ids are then an ``IN`` list."""
        if owner.resource_type is None:
            raise bad_request(f":of-type on {definition.code!r} needs a resource type")
        if not re.search(r"\bidentifier\b", definition.expression or ""):
            raise bad_request(f":of-type applies to Identifier parameters, not {definition.code!r}")
        from fhirhub.fhir_store.encryption import opened

        matched: set[str] = set()
        for raw in values:
            if raw == "":
                continue
            parts = split_unescaped(raw, "|")
            if len(parts) != 3 or not parts[1] or not parts[2]:
                raise bad_request(f":of-type needs [type system]|[type code]|[value], not {raw!r}")
            type_system, type_code, value = (unescape(p) for p in parts)
            holders = select(index_token.c.resource_id).where(
                index_token.c.resource_type == owner.resource_type,
                index_token.c.param == definition.code,
                index_token.c.code == value,
            )
            # Only resources the caller may see are read (and counted against the bound).
            rc = current_alias(owner.resource_type)
            rows = self.conn.execute(
                select(rc.id_col, rc.table.c.content)
                .where(
                    rc.type_col == owner.resource_type,
                    rc.id_col.in_(holders),
                    rc.table.c.deleted.is_(False),
                    *self._visible(rc),
                )
                .limit(MAX_OF_TYPE_CANDIDATES + 1)
            ).all()
            if len(rows) > MAX_OF_TYPE_CANDIDATES:
                raise too_costly(
                    f"{definition.code}:of-type: the value {value!r} is held by more than "
                    f"{MAX_OF_TYPE_CANDIDATES} resources; narrow the search"
                )
            systems: dict[str, set[str | None]] = {}
            for resource_id, system in self.conn.execute(
                select(index_token.c.resource_id, index_token.c.system).where(
                    index_token.c.resource_type == owner.resource_type,
                    index_token.c.param == definition.code,
                    index_token.c.code == value,
                    index_token.c.resource_id.in_(sorted(row[0] for row in rows)),
                )
            ):
                systems.setdefault(resource_id, set()).add(system)
            for resource_id, content in rows:
                plain = opened(self.conn, content)
                if resource_id in matched or plain is None:
                    continue
                if _has_typed_identifier(
                    orjson.loads(plain),
                    value,
                    systems.get(resource_id, set()),
                    type_system,
                    type_code,
                ):
                    matched.add(resource_id)
        if not matched:
            return false()
        ids: BindParameter[list[str]] = bindparam(
            "of_type_ids", sorted(matched), expanding=True, literal_execute=True, unique=True
        )
        return owner.id_col.in_(ids)

    # -- subqueries

    def _in_index(
        self, owner: Owner, table: Any, code: str, value_condition: ColumnElement[bool]
    ) -> ColumnElement[bool]:
        if owner.resource_type is not None:
            sub = select(table.c.resource_id).where(
                table.c.resource_type == owner.resource_type,
                table.c.param == code,
                value_condition,
            )
            return owner.id_col.in_(sub)
        sub = select(table.c.resource_type, table.c.resource_id).where(
            table.c.param == code, value_condition
        )
        if owner.types is not None:
            sub = sub.where(table.c.resource_type.in_(owner.types))
        return tuple_(owner.type_col, owner.id_col).in_(sub)

    def _missing(
        self, owner: Owner, definition: SearchParameterDef, value: str
    ) -> ColumnElement[bool]:
        if value not in ("true", "false"):
            raise bad_request(f":missing takes true or false, not {value!r}")
        table = _TABLE_OF.get(definition.type)
        if table is None:
            raise not_supported(f":missing is not supported on {definition.code!r}")
        present = self._in_index(owner, table, definition.code, true())
        return not_(present) if value == "true" else present

    # -- special parameters on resource_current columns

    def _id(self, owner: Owner, parsed: ParamName, value: str) -> ColumnElement[bool]:
        if parsed.modifier not in (None, "not"):
            raise bad_request(f"Unknown modifier {parsed.modifier!r} on _id")
        ids = [unescape(v) for v in split_unescaped(value, ",") if v]
        if not ids:
            raise bad_request("_id needs a value")
        cond = owner.id_col.in_(ids)
        return not_(cond) if parsed.modifier == "not" else cond

    def _last_updated(self, owner: Owner, parsed: ParamName, value: str) -> ColumnElement[bool]:
        if parsed.modifier is not None:
            raise bad_request(f"Unknown modifier {parsed.modifier!r} on _lastUpdated")
        conds = []
        for item in split_unescaped(value, ","):
            prefix, text = split_prefix(item)
            period = parse_date(text)
            column = owner.updated_col
            conds.append(date_condition(prefix, period, column, column, self.now_us))
        return or_(*conds)

    def _type(self, owner: Owner, parsed: ParamName, value: str) -> ColumnElement[bool]:
        types = [t for t in value.split(",") if t]
        for t in types:
            if t not in self.known_types:
                raise bad_request(f"Unknown resource type {t!r} in _type")
        return owner.type_col.in_(types)

    # -- value builders, one per parameter type

    def _string(self, raw: str, modifier: str | None) -> ColumnElement[bool]:
        text = unescape(raw)
        if modifier == "exact":
            return index_string.c.exact == text
        folded = fold_string(text)
        if modifier == "contains":
            return index_string.c.value.like(f"%{_like_escape(folded)}%", escape="\\")
        return self.starts_with(index_string.c.value, folded)

    def starts_with(self, column: Any, prefix: str) -> ColumnElement[bool]:
        """``column`` starts with ``prefix``. On SQLite a range over the (binary-collated)
        lookup index; on PostgreSQL ``LIKE``, whose meaning does not depend on the collation."""
        if not prefix:
            return column.is_not(None)  # type: ignore[no-any-return]
        if self.sqlite:
            upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            return and_(column >= prefix, column < upper)
        return column.like(f"{_like_escape(prefix)}%", escape="\\")  # type: ignore[no-any-return]

    def _token(self, raw: str, modifier: str | None) -> ColumnElement[bool]:
        if modifier == "text":
            folded = fold_string(unescape(raw))
            return or_(
                self.starts_with(index_token.c.text, folded),
                index_token.c.text.like(f"% {_like_escape(folded)}%", escape="\\"),
            )
        parts = split_unescaped(raw, "|")
        if len(parts) == 1:
            return index_token.c.code == unescape(parts[0])
        if len(parts) != 2:
            raise bad_request(f"Invalid token search value {raw!r}")
        system, code = unescape(parts[0]), unescape(parts[1])
        if system == "" and code == "":
            raise bad_request(f"Invalid token search value {raw!r}")
        if system == "":
            return and_(index_token.c.system.is_(None), index_token.c.code == code)
        if code == "":
            return index_token.c.system == system
        return and_(index_token.c.code == code, index_token.c.system == system)

    def _date(self, raw: str, modifier: str | None) -> ColumnElement[bool]:
        prefix, text = split_prefix(raw)
        period = parse_date(text)
        return date_condition(prefix, period, index_date.c.low, index_date.c.high, self.now_us)

    def _number(self, raw: str, modifier: str | None) -> ColumnElement[bool]:
        prefix, text = split_prefix(raw)
        return number_condition(prefix, parse_number(text), index_number.c.value)

    def _quantity(self, raw: str, modifier: str | None) -> ColumnElement[bool]:
        parts = split_unescaped(raw, "|")
        if len(parts) not in (1, 3):
            raise bad_request(f"Invalid quantity search value {raw!r} (value|system|code)")
        prefix, text = split_prefix(parts[0])
        conds = [number_condition(prefix, parse_number(text), index_quantity.c.value)]
        if len(parts) == 3:
            system, code = unescape(parts[1]), unescape(parts[2])
            if system:
                conds.append(index_quantity.c.system == system)
                if code:
                    conds.append(index_quantity.c.code == code)
            elif code:
                conds.append(or_(index_quantity.c.code == code, index_quantity.c.unit == code))
        return and_(*conds)

    def _quantity_builder(
        self, owner: Owner, definition: SearchParameterDef
    ) -> Callable[[str, str | None], ColumnElement[bool]]:
        """Quantity values with UCUM conversion (:mod:`fhirhub.fhir_store.search.terminology`):
        ``n|http://unitsofmeasure.org|unit`` matches each stored UCUM unit that converts."""
        stored: list[str] | None = None

        def build(raw: str, modifier: str | None) -> ColumnElement[bool]:
            nonlocal stored
            parts = split_unescaped(raw, "|")
            if len(parts) != 3 or unescape(parts[1]) != UCUM_SYSTEM or not parts[2]:
                return self._quantity(raw, modifier)
            prefix, text = split_prefix(parts[0])
            number = parse_number(text)
            if stored is None:
                stored = self._stored_units(owner, definition.code)
            resolver = self.registry.quantity_units
            assert resolver is not None
            conversions = dict(resolver(unescape(parts[2]), stored))
            terms = [
                and_(
                    index_quantity.c.code == unit,
                    index_quantity.c.system == UCUM_SYSTEM,
                    number_condition(
                        prefix,
                        (
                            conversion.apply(number[0]),
                            conversion.apply(number[1]),
                            conversion.apply(number[2]),
                        ),
                        index_quantity.c.value,
                    ),
                )
                for unit, conversion in sorted(conversions.items())
                if conversion.factor > 0
            ]
            return or_(*terms) if terms else false()

        return build

    def _stored_units(self, owner: Owner, code: str) -> list[str]:
        """The distinct unit codes stored for one quantity parameter: a loose index scan on
        ``ix_quantity_lookup`` (one seek per unit, whatever the number of rows)."""
        units: list[str] = []
        last = ""
        for _ in range(200):
            query = select(index_quantity.c.code).where(
                index_quantity.c.param == code, index_quantity.c.code > last
            )
            if owner.resource_type is not None:
                query = query.where(index_quantity.c.resource_type == owner.resource_type)
            found = self.conn.execute(query.order_by(index_quantity.c.code).limit(1)).scalar()
            if found is None:
                break
            units.append(found)
            last = found
        return units

    def _uri(self, raw: str, modifier: str | None) -> ColumnElement[bool]:
        text = unescape(raw)
        if modifier == "below":
            return self.starts_with(index_uri.c.uri, text)
        if modifier == "above":
            return index_uri.c.uri.in_(_uri_prefixes(text))
        return index_uri.c.uri == text

    # -- references, chaining, reverse chaining

    def _reference(
        self,
        owner: Owner,
        definition: SearchParameterDef,
        modifier: str | None,
        value: str,
        depth: int,
    ) -> ColumnElement[bool]:
        target_type: str | None = None
        if modifier == "identifier":
            return self._reference_identifier(owner, definition, value, depth)
        if modifier is not None:
            if modifier not in self.known_types:
                raise bad_request(
                    f"Unknown modifier {modifier!r} for reference parameter {definition.code!r}"
                )
            if definition.target and modifier not in definition.target:
                raise bad_request(
                    f"{modifier} is not a target type of {definition.code!r} "
                    f"({', '.join(definition.target)})"
                )
            target_type = modifier
        values = [unescape(v) for v in split_unescaped(value, ",") if v]
        if not values:
            raise bad_request(f"Search parameter {definition.code!r} has an empty value")
        if len(values) == 1:
            cond = self._reference_value(values[0], target_type)
        else:
            cond = self._reference_values(values, target_type)
        return self._in_index(owner, index_reference, definition.code, cond)

    def _reference_values(self, values: list[str], target_type: str | None) -> ColumnElement[bool]:
        """Several values (``subject=Patient/a,Patient/b,...``): the plain ``Type/id`` ones
        (and bare ids) grouped into one ``IN`` per type, the same rows as one equality per
        value joined by OR, but one statement shape whatever the number of values, so its
        compiled SQL is cached (a consumer looking up 100 patients at a time compiled a new
        statement of 200 comparisons for every call)."""
        ref = index_reference.c
        typed: dict[str, list[str]] = {}
        bare: list[str] = []
        conds: list[ColumnElement[bool]] = []
        for text in values:
            pair = self._plain_reference(text, target_type)
            if pair is None:
                conds.append(self._reference_value(text, target_type))
            elif pair[0] is None:
                bare.append(pair[1])
            else:
                typed.setdefault(pair[0], []).append(pair[1])
        for type_name, ids in typed.items():
            conds.append(and_(ref.target_type == type_name, ref.target_id.in_(ids)))
        if bare:
            conds.append(ref.target_id.in_(bare))
        return or_(*conds)

    def _plain_reference(self, text: str, target_type: str | None) -> tuple[str | None, str] | None:
        """(type, id) of a relative ``Type/id`` value of a wanted type (type None: a bare id
        without a type modifier); None for anything else (urls, other types, malformed
        values), which :meth:`_reference_value` then handles or refuses."""
        if text.startswith(self.base_url + "/"):
            text = text[len(self.base_url) + 1 :]
        if "://" in text or text.startswith("urn:"):
            return None
        parts = text.split("/")
        if len(parts) >= 4 and parts[2] == "_history":
            parts = parts[:2]
        if len(parts) == 2:
            if target_type is not None and parts[0] != target_type:
                return None
            return parts[0], parts[1]
        if len(parts) != 1:
            return None
        if target_type is not None:
            return target_type, text
        return None, text

    def _reference_value(self, text: str, target_type: str | None) -> ColumnElement[bool]:
        ref = index_reference.c
        if text.startswith(self.base_url + "/"):
            text = text[len(self.base_url) + 1 :]
        if "://" in text or text.startswith("urn:"):
            url, bar, version = text.partition("|")
            cond = ref.url == url
            return and_(cond, ref.version == version) if bar and version else cond
        parts = text.split("/")
        if len(parts) >= 4 and parts[2] == "_history":
            parts = parts[:2]
        if len(parts) == 2:
            if target_type is not None and parts[0] != target_type:
                return false()
            return and_(ref.target_type == parts[0], ref.target_id == parts[1])
        if len(parts) != 1 or not text:
            raise bad_request(f"Invalid reference search value {text!r}")
        if target_type is not None:
            return and_(ref.target_type == target_type, ref.target_id == text)
        return ref.target_id == text

    def _target_types(
        self, definition: SearchParameterDef, modifier: str | None, chained_code: str
    ) -> list[str]:
        if modifier is not None:
            if modifier not in self.known_types:
                raise bad_request(f"Unknown resource type {modifier!r} in chain")
            candidates: Sequence[str] = [modifier]
        else:
            candidates = definition.target or sorted(self.known_types)
        return [
            t
            for t in candidates
            if self.registry.get(t, chained_code) is not None
            or (chained_code in ("_id", "_lastUpdated", "_has"))
        ]

    def _chain(
        self,
        owner: Owner,
        definition: SearchParameterDef,
        parsed: ParamName,
        value: str,
        depth: int,
    ) -> ColumnElement[bool]:
        if definition.type != "reference":
            raise bad_request(f"Only reference parameters can be chained, not {parsed.code!r}")
        assert parsed.chain is not None
        chained_code = parse_name(parsed.chain).code
        if parsed.chain.startswith("_has:"):
            chained_code = "_has"
        targets = self._target_types(definition, parsed.modifier, chained_code)
        if not targets:
            raise UnknownParameter(
                f"{parsed.code}.{parsed.chain}",
                f"No target type of {parsed.code!r} defines search parameter {chained_code!r}",
            )
        return self._references_to(owner, definition.code, targets, parsed.chain, value, depth)

    def _references_to(
        self,
        owner: Owner,
        code: str,
        targets: Sequence[str],
        name: str,
        value: str,
        depth: int,
    ) -> ColumnElement[bool]:
        """Owner references (through ``code``) a resource of one of ``targets`` that matches
        ``name=value``."""
        ref = index_reference.c
        per_type = []
        self._spend(len(targets))
        for target in targets:
            inner = current_alias(target)
            matching = select(inner.id_col).where(
                inner.type_col == target,
                inner.table.c.deleted.is_(False),
                self.condition(inner, name, value, depth + 1),
                *self._visible(inner),
            )
            per_type.append(and_(ref.target_type == target, ref.target_id.in_(matching)))
        return self._in_index(owner, index_reference, code, or_(*per_type))

    def _reference_identifier(
        self, owner: Owner, definition: SearchParameterDef, value: str, depth: int
    ) -> ColumnElement[bool]:
        """``subject:identifier=system|value``: the reference index keeps literal references
        only, so this matches references to resources whose ``identifier`` matches (a logical
        reference resolved through the referenced resource)."""
        targets = self._target_types(definition, None, "identifier")
        if not targets:
            raise bad_request(f"No target of {definition.code!r} has an identifier")
        return self._references_to(owner, definition.code, targets, "identifier", value, depth)

    def _visible(self, owner: Owner) -> list[ColumnElement[bool]]:
        if self.visibility is None:
            return []
        from fhirhub.fhir_store.search.visibility import restrict

        return restrict(owner, self.visibility)

    def _has(self, owner: Owner, name: str, value: str, depth: int) -> ColumnElement[bool]:
        """``_has:Observation:patient:code=x``: the owner is referenced, through ``patient``,
        by an Observation matching ``code=x`` (http://hl7.org/fhir/R4/search.html#has)."""
        parts = name.split(":", 3)
        if len(parts) != 4 or not all(parts[1:]):
            raise bad_request(f"Invalid _has parameter {name!r} (_has:Type:reference:param)")
        _, source_type, ref_code, rest = parts
        if owner.resource_type is None:
            raise bad_request("_has needs a resource type to search")
        if source_type not in self.known_types:
            raise bad_request(f"Unknown resource type {source_type!r} in {name!r}")
        definition = self.registry.get(source_type, ref_code)
        if definition is None or definition.type != "reference":
            raise bad_request(f"{source_type} has no reference parameter {ref_code!r}")
        source = current_alias(source_type)
        referring = select(source.id_col).where(
            source.type_col == source_type,
            source.table.c.deleted.is_(False),
            self.condition(source, rest, value, depth + 1),
            *self._visible(source),
        )
        ref = index_reference.c
        targets = select(ref.target_id).where(
            ref.resource_type == source_type,
            ref.param == ref_code,
            ref.target_type == owner.resource_type,
            ref.resource_id.in_(referring),
        )
        return owner.id_col.in_(targets)

    # -- composite

    def _composite(
        self, owner: Owner, definition: SearchParameterDef, values: list[str]
    ) -> ColumnElement[bool]:
        if owner.resource_type is None:
            raise bad_request(f"Composite parameter {definition.code!r} needs a resource type")
        kinds: list[str] = []
        for url, _expression in definition.components:
            component = self.registry.by_url(url)
            if component is None:
                raise not_supported(f"Composite {definition.code!r} has an unknown component")
            kinds.append(component.type)
        matched: set[str] = set()
        for value in values:
            if not value:
                continue
            parts = split_unescaped(value, "$")
            if len(parts) != len(kinds):
                raise bad_request(
                    f"Composite {definition.code!r} needs {len(kinds)} '$'-separated parts: "
                    f"{value!r}"
                )
            checks = [
                _component_check(k, p, self.now_us) for k, p in zip(kinds, parts, strict=True)
            ]
            key = _composite_key(kinds[0], parts[0])
            query = select(index_composite.c.resource_id, index_composite.c.components).where(
                index_composite.c.resource_type == owner.resource_type,
                index_composite.c.param == definition.code,
            )
            if key is not None:
                query = query.where(index_composite.c.key == key)
            for resource_id, components in self.conn.execute(query):
                if resource_id in matched:
                    continue
                stored = orjson.loads(components)
                if len(stored) == len(checks) and all(
                    check(item) for check, item in zip(checks, stored, strict=True)
                ):
                    matched.add(resource_id)
        if not matched:
            return false()
        # Rendered inline (quoted by the dialect), not as one bind variable per id: a common
        # first component can match more ids than SQLite allows variables in a statement.
        ids: BindParameter[list[str]] = bindparam(
            "composite_ids", sorted(matched), expanding=True, literal_execute=True, unique=True
        )
        return owner.id_col.in_(ids)


def _has_typed_identifier(
    resource: Any,
    value: str,
    systems: set[str | None],
    type_system: str,
    type_code: str,
) -> bool:
    """Whether ``resource`` holds an Identifier with ``value`` (and one of the ``systems``
    the token index has for it under the parameter) whose ``type`` has the coding
    ``type_system|type_code`` (an empty type system: any)."""
    stack = [resource]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if item.get("value") == value and item.get("system") in systems and isinstance(kind, dict):
            for coding in kind.get("coding") or ():
                if (
                    isinstance(coding, dict)
                    and coding.get("code") == type_code
                    and (not type_system or coding.get("system") == type_system)
                ):
                    return True
        stack.extend(v for v in item.values() if isinstance(v, (dict, list)))
    return False


_TABLE_OF: dict[str, Any] = {
    "string": index_string,
    "token": index_token,
    "date": index_date,
    "number": index_number,
    "quantity": index_quantity,
    "reference": index_reference,
    "uri": index_uri,
    "composite": index_composite,
}


def _uri_prefixes(uri: str) -> list[str]:
    """Every ``/``-delimited prefix of ``uri`` (for ``:above``)."""
    out = [uri]
    text = uri
    while "/" in text.rstrip("/"):
        text = text.rstrip("/").rsplit("/", 1)[0]
        if text.endswith(":") or text.endswith(":/"):
            break
        out.extend([text, text + "/"])
    return out


def _composite_key(kind: str, raw: str) -> str | None:
    """The indexed key of a composite's first component (see ``extract._composite_key``)."""
    if kind == "token":
        parts = split_unescaped(raw, "|")
        return unescape(parts[-1]) or None
    if kind == "uri":
        return unescape(raw)
    if kind == "reference":
        return unescape(raw).split("/")[-1] or None
    return None


def _component_check(kind: str, raw: str, now_us: int) -> Callable[[dict[str, Any]], bool]:
    """A Python predicate on one stored composite component (a dict of index columns)."""
    if kind == "token":
        parts = split_unescaped(raw, "|")
        if len(parts) == 1:
            code = unescape(parts[0])
            return lambda c: c.get("code") == code
        if len(parts) != 2:
            raise bad_request(f"Invalid token value {raw!r} in composite")
        system, code = unescape(parts[0]), unescape(parts[1])
        if not system:
            return lambda c: c.get("system") is None and c.get("code") == code
        if not code:
            return lambda c: c.get("system") == system
        return lambda c: c.get("system") == system and c.get("code") == code
    if kind in ("quantity", "number"):
        parts = split_unescaped(raw, "|") if kind == "quantity" else [raw]
        if len(parts) not in (1, 3):
            raise bad_request(f"Invalid quantity value {raw!r} in composite")
        prefix, text = split_prefix(parts[0])
        search = parse_number(text)
        system = unescape(parts[1]) if len(parts) == 3 else ""
        code = unescape(parts[2]) if len(parts) == 3 else ""

        def quantity(c: dict[str, Any]) -> bool:
            value = c.get("value")
            if not isinstance(value, int | float) or not _number_matches(prefix, search, value):
                return False
            if system and c.get("system") != system:
                return False
            if code and system and c.get("code") != code:
                return False
            return not (code and not system and code not in (c.get("code"), c.get("unit")))

        return quantity
    if kind == "date":
        prefix, text = split_prefix(raw)
        period = parse_date(text)
        return lambda c: _date_matches(prefix, period, c["low"], c["high"], now_us)
    if kind == "string":
        folded = fold_string(unescape(raw))
        return lambda c: str(c.get("value", "")).startswith(folded)
    if kind == "uri":
        uri = unescape(raw)
        return lambda c: c.get("uri") == uri
    if kind == "reference":
        text = unescape(raw)
        parts = text.split("/")
        if len(parts) == 2:
            return lambda c: c.get("target_type") == parts[0] and c.get("target_id") == parts[1]
        return lambda c: c.get("target_id") == text or c.get("url") == text
    raise not_supported(f"Composite component of type {kind} is not supported")


#: Used by query.py to tell columns apart in sort expressions.
SORT_COLUMNS: dict[str, tuple[Column[Any], Column[Any]]] = {
    "string": (index_string.c.value, index_string.c.value),
    "token": (index_token.c.code, index_token.c.code),
    "date": (index_date.c.low, index_date.c.high),
    "number": (index_number.c.value, index_number.c.value),
    "quantity": (index_quantity.c.value, index_quantity.c.value),
    "reference": (index_reference.c.target_id, index_reference.c.target_id),
    "uri": (index_uri.c.uri, index_uri.c.uri),
}

__all__ = [
    "Owner",
    "ParamName",
    "Predicates",
    "SORT_COLUMNS",
    "UnknownParameter",
    "bad_request",
    "current_alias",
    "parse_name",
    "split_unescaped",
    "unescape",
]
