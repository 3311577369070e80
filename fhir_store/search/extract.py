"""Compiled extraction of search index values from resources (the write side of search).

Every search parameter's FHIRPath expression is compiled once (per resource type) into a plain
Python getter over the resource's JSON dicts. The official R4 expressions are almost all simple
shapes (http://hl7.org/fhir/R4/searchparameter-registry.html), which the compiler translates:

* dotted paths over nested objects and arrays (``Patient.name.given``), ``[n]`` indexing;
* choice elements (http://hl7.org/fhir/R4/formats.html#choice): ``Observation.value.ofType(
  Quantity)``, ``.as(Quantity)`` and ``(Observation.value as Quantity)`` read ``valueQuantity``; a
  choice element without a type reads every ``value[x]`` variant present. Which elements are
  choices, and the data type of each path, come from fhirpathpy's R4 model;
* ``.where(resolve() is Patient)`` keeps references to that type, ``.where(system='email')``
  keeps items whose element equals the literal, ``.extension('url')``, ``.exists()``,
  ``.first()``, unions ``a | b``, and ``%resource.x`` in composite components.

Anything else is compiled with fhirpathpy's ``compile`` (never ``evaluate``, which re-parses per
call); the one official expression of that kind, ``Patient.deceased.exists() and
Patient.deceased != false``, has a hand-written getter for the usual shapes (``_HAND_WRITTEN``). An expression neither can compile is logged once and skipped, so a write never fails
because of a search parameter.

Raw values are then converted into index rows by parameter type, following the normalisation
of ``fhir_store.search.index_tables``:

* string: primitives; HumanName -> family, given, prefix, suffix, text; Address -> line, city,
  district, state, postalCode, country, text; other types -> text/display/value;
* token: Coding, CodeableConcept (each coding; the concept text, or a text-only row when it has
  no coding), Identifier (system|value), ContactPoint (system|value: system is ``phone``,
  ``email``...), code/boolean/string/id primitives (system None, booleans as ``true``/``false``);
  ``text`` is the folded display (Coding), concept text or Identifier.type text;
* reference: ``Type/id`` (also ``Type/id/_history/n``) -> target_type/target_id; absolute URLs,
  ``urn:`` and ``#contained`` references, and canonicals (strings) -> url, with ``version`` for
  ``url|version``;
* date: date/dateTime/instant -> ``normalize.date_range``; Period -> start's low to end's high
  (an open end is ``MIN_INSTANT``/``MAX_INSTANT``); Timing -> each event (or its
  repeat.boundsPeriod);
* number: ``normalize.number_range``; quantity: Quantity/SimpleQuantity/Age/Duration/Distance/
  Count -> value range, system, code, unit; Money -> currency as code with system
  ``urn:iso:std:iso:4217``; Range -> one row from low.value to high.value (``value`` is the low
  end, or the high end when there is no low); UCUM canonicalisation is not done (the stored code
  is the one written);
* uri: the string as written;
* composite: one row per combination of component values (a cartesian product per item the
  composite's expression yields, so the two parts of ``code-value-quantity`` always come from the
  same Observation or the same ``Observation.component``). ``components`` is the JSON array, in
  component order, of each component's value columns as an object (token:
  ``{"system","code","text"}``, quantity: ``{"value","low","high","system","code","unit"}``,
  date: ``{"low","high"}``, string: ``{"value","exact"}``, reference: ``{"target_type",
  "target_id","url","version"}``, uri: ``{"uri"}``, number: ``{"value","low","high"}``); ``key``
  is the first component's code (token), folded value (string), uri, reference target id (or
  url), or None for date/number/quantity first components.

Not indexed: ``_id`` and ``_lastUpdated`` (the query side reads ``resource_current``), and
parameters without an expression or of type ``special`` (``_text``, ``_content``, ``_query``,
``Location.near``): full-text and geographic search are not provided by these tables.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from itertools import product
from typing import TYPE_CHECKING, Any

import orjson

from fhirhub.fhir_store.search.definitions import SearchParameterDef, split_union
from fhirhub.fhir_store.search.normalize import (
    MAX_INSTANT,
    MIN_INSTANT,
    date_range,
    fold_string,
    number_range,
)

if TYPE_CHECKING:
    from fhirhub.fhir_store.search.parameters import SearchParameterRegistry

log = logging.getLogger(__name__)

#: Value columns of each index table, in the order converters produce them.
COLUMNS: dict[str, tuple[str, ...]] = {
    "string": ("value", "exact"),
    "token": ("system", "code", "text"),
    "date": ("low", "high"),
    "number": ("value", "low", "high"),
    "quantity": ("value", "low", "high", "system", "code", "unit"),
    "reference": ("target_type", "target_id", "url", "version"),
    "uri": ("uri",),
    "composite": ("key", "components"),
}

#: Parameters that have no index rows: answered from ``resource_current`` columns.
UNINDEXED = frozenset({"_id", "_lastUpdated"})

Getter = Callable[[Any], list[Any]]
Row = tuple[Any, ...]


class Unsupported(Exception):
    """The fast compiler cannot translate this expression; use the general evaluator."""


# --------------------------------------------------------------------------------------------
# FHIR type information (fhirpathpy's R4 model: element types and choice elements)


@dataclass(frozen=True)
class _Model:
    path2type: Mapping[str, str]
    choices: Mapping[str, list[str]]
    elsewhere: Mapping[str, str]


def _load_model() -> _Model:
    from fhirpathpy.models import models

    r4 = models["r4"]
    return _Model(r4["path2Type"], r4["choiceTypePaths"], r4["pathsDefinedElsewhere"])


_MODEL: _Model | None = None


def _model() -> _Model:
    global _MODEL
    if _MODEL is None:
        _MODEL = _load_model()
    return _MODEL


def _fhirpath_model() -> Any:
    from fhirpathpy.models import models

    return models["r4"]


# --------------------------------------------------------------------------------------------
# The fast compiler: FHIRPath term -> list of operations over lists of JSON values


def _scan_steps(text: str) -> list[tuple[str, str | None]]:
    """Split ``a.b.where(x='y').c[0]`` into (name, args) steps; ``[n]`` becomes ("[]", "n")."""
    steps: list[tuple[str, str | None]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == "[":
            end = text.index("]", i)
            steps.append(("[]", text[i + 1 : end].strip()))
            i = end + 1
        else:
            start = i
            while i < n and (text[i].isalnum() or text[i] == "_"):
                i += 1
            if i == start:
                raise Unsupported(f"unexpected {text[i:]!r}")
            name = text[start:i]
            args: str | None = None
            if i < n and text[i] == "(":
                depth, j = 0, i
                while j < n:
                    if text[j] == "(":
                        depth += 1
                    elif text[j] == ")":
                        depth -= 1
                        if depth == 0:
                            break
                    j += 1
                if j >= n:
                    raise Unsupported("unbalanced parentheses")
                args = text[i + 1 : j].strip()
                i = j + 1
            steps.append((name, args))
        if i < n:
            if text[i] == ".":
                i += 1
                if i >= n:
                    raise Unsupported("trailing dot")
            elif text[i] != "[":
                raise Unsupported(f"unexpected {text[i:]!r}")
    return steps


class _Compiler:
    """Compiles one union term relative to a context whose FHIR path/type is known."""

    def __init__(self, context: str) -> None:
        self.model = _model()
        #: The FHIR path or type of the current values (None once unknown).
        self.path: str | None = context
        #: Element name and choice types when the last step read a choice element untyped.
        self.pending_choice: tuple[str, list[str]] | None = None
        self.ops: list[Callable[[list[Any]], list[Any]]] = []
        #: The element names read, while every step so far is a plain child step.
        self.keys: list[str] | None = []

    def _add(self, op: Callable[[list[Any]], list[Any]], key: str | None = None) -> None:
        self.ops.append(op)
        if self.keys is not None:
            if key is None:
                self.keys = None
            else:
                self.keys.append(key)

    def compile_term(self, term: str) -> None:
        term = term.strip()
        if term.startswith("("):
            depth, j = 0, 0
            while j < len(term):
                depth += term[j] == "("
                depth -= term[j] == ")"
                if depth == 0:
                    break
                j += 1
            if depth:
                raise Unsupported("unbalanced parentheses")
            inner, rest = term[1:j].strip(), term[j + 1 :].strip()
            cast: str | None = None
            words = inner.rsplit(None, 2)
            if len(words) == 3 and words[1] == "as":
                inner, cast = words[0], words[2]
            self.compile_term(inner)
            if cast is not None:
                self.of_type(cast)
            if rest:
                if not rest.startswith("."):
                    raise Unsupported(f"unexpected {rest!r}")
                self.compile_steps(rest[1:], root_allowed=False)
            return
        if " " in term.replace(", ", ",").replace(" is ", "").replace(" = ", "="):
            raise Unsupported("operators")
        self.compile_steps(term, root_allowed=True)

    def compile_steps(self, text: str, *, root_allowed: bool) -> None:
        steps = _scan_steps(text)
        if root_allowed and steps and steps[0][1] is None and steps[0][0][:1].isupper():
            root = steps[0][0]
            context_root = (self.path or "").split(".")[0]
            if root != context_root and root not in ("Resource", "DomainResource"):
                raise Unsupported(f"root {root} does not match {context_root}")
            steps = steps[1:]
        for name, args in steps:
            if name == "[]":
                self.index(args or "")
            elif args is None:
                self.child(name)
            else:
                self.function(name, args)

    # -- steps

    def _settle_choice(self) -> None:
        """An untyped choice element is followed by another step: read every variant."""
        if self.pending_choice is None:
            return
        name, types = self.pending_choice
        self.pending_choice = None
        keys = tuple(name + t[0].upper() + t[1:] for t in types)
        self._add(_child_keys(keys))
        self.path = None

    def child(self, name: str) -> None:
        self._settle_choice()
        if self.path is None:
            self._add(_child(name), name)
            return
        path = f"{self.path}.{name}"
        path = self.model.elsewhere.get(path, path)
        choice = self.model.choices.get(path)
        if choice is not None:
            self.pending_choice = (name, choice)
            return
        self._add(_child(name), name)
        element_type = self.model.path2type.get(path)
        if element_type is None:
            self.path = path  # a backbone element: its children are addressed by path
        elif element_type.startswith("System.") or element_type[:1].islower():
            self.path = "primitive"
        else:
            self.path = element_type

    def of_type(self, type_name: str) -> None:
        if self.pending_choice is not None:
            name, types = self.pending_choice
            self.pending_choice = None
            wanted = type_name[0].upper() + type_name[1:]
            if wanted not in types:
                self._add(lambda items: [])
            else:
                self._add(_child(name + wanted), name + wanted)
            self.path = type_name if type_name[:1].isupper() else "primitive"
            return
        if self.path is not None and self.path == type_name:
            return
        if type_name[:1].isupper() and self.path in ("Resource", None):
            self._add(_resource_type_filter(type_name))
            self.path = type_name
            return
        raise Unsupported(f"ofType({type_name}) on a non-choice element")

    def index(self, text: str) -> None:
        self._settle_choice()
        if not text.isdigit():
            raise Unsupported("non-literal index")
        position = int(text)
        self._add(lambda items: items[position : position + 1])

    def function(self, name: str, args: str) -> None:
        if name in ("ofType", "as"):
            self.of_type(args)
            return
        self._settle_choice()
        if name == "where":
            self.where(args)
        elif name == "exists" and not args:
            self._add(lambda items: [bool(items)])
            self.path = "primitive"
        elif name == "first" and not args:
            self._add(lambda items: items[:1])
        elif name == "extension" and args[:1] in "'\"" and args[-1:] == args[:1]:
            url = args[1:-1]
            self._add(_extension(url))
            self.path = "Extension"
        else:
            raise Unsupported(f"function {name}({args})")

    def where(self, args: str) -> None:
        words = args.split()
        if len(words) == 3 and words[0] == "resolve()" and words[1] == "is":
            self._add(_resolves_to(words[2]))
            return
        field, sep, literal = args.partition("=")
        field, literal = field.strip(), literal.strip()
        if (
            sep
            and field.isidentifier()
            and len(literal) >= 2
            and literal[0] == literal[-1] == "'"
            and "'" not in literal[1:-1]
        ):
            self._add(_field_equals(field, literal[1:-1]))
            return
        raise Unsupported(f"where({args})")

    def finish(self) -> Getter:
        """The getter of this term: a specialised one for plain paths (most parameters)."""
        self._settle_choice()
        if self.keys:
            return _path_getter(tuple(self.keys))
        ops = tuple(self.ops)
        if not ops:
            return lambda value: [value]

        def run(value: Any) -> list[Any]:
            items = [value]
            for op in ops:
                items = op(items)
                if not items:
                    return items
            return items

        return run


def _path_getter(keys: tuple[str, ...]) -> Getter:
    """A getter for a plain dotted path (``name.given``): flattens arrays at each step. May
    return a list owned by the resource; callers only read it."""
    first, rest = keys[0], keys[1:]

    def get(value: Any) -> list[Any]:
        if type(value) is not dict:
            return []
        items = value.get(first)
        if items is None:
            return []
        if type(items) is not list:
            items = [items]
        for key in rest:
            out: list[Any] = []
            for item in items:
                if type(item) is dict:
                    child = item.get(key)
                    if child is not None:
                        if type(child) is list:
                            out.extend(child)
                        else:
                            out.append(child)
            if not out:
                return out
            items = out
        return items

    return get


def _child(key: str) -> Callable[[list[Any]], list[Any]]:
    def op(items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for item in items:
            if type(item) is dict:
                value = item.get(key)
                if value is not None:
                    if type(value) is list:
                        out.extend(value)
                    else:
                        out.append(value)
        return out

    return op


def _child_keys(keys: tuple[str, ...]) -> Callable[[list[Any]], list[Any]]:
    def op(items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for item in items:
            if type(item) is dict:
                for key in keys:
                    value = item.get(key)
                    if value is not None:
                        if type(value) is list:
                            out.extend(value)
                        else:
                            out.append(value)
        return out

    return op


def _resource_type_filter(type_name: str) -> Callable[[list[Any]], list[Any]]:
    return lambda items: [
        i for i in items if type(i) is dict and i.get("resourceType") == type_name
    ]


def _extension(url: str) -> Callable[[list[Any]], list[Any]]:
    def op(items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for item in items:
            if type(item) is dict:
                for ext in item.get("extension") or ():
                    if type(ext) is dict and ext.get("url") == url:
                        out.append(ext)
        return out

    return op


def _field_equals(field: str, literal: str) -> Callable[[list[Any]], list[Any]]:
    def op(items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for item in items:
            if type(item) is dict:
                value = item.get(field)
                if value == literal or (
                    value is not None and type(value) is not str and _literal(value) == literal
                ):
                    out.append(item)
        return out

    return op


def _literal(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def reference_type(reference: Any) -> str | None:
    """The resource type a Reference (or reference string) points at, when it can be told."""
    if type(reference) is dict:
        declared = reference.get("type")
        ref = reference.get("reference")
        if type(ref) is not str:
            return declared if type(declared) is str else None
    elif type(reference) is str:
        declared, ref = None, reference
    else:
        return None
    parsed = parse_reference(ref)
    if parsed[0] is not None:
        return str(parsed[0])
    url = parsed[2] or ""
    if "://" in url:
        parts = url.split("/")
        if "_history" in parts:
            parts = parts[: parts.index("_history")]
        if len(parts) >= 2 and parts[-2][:1].isupper():
            return parts[-2]
    return declared if type(declared) is str else None


def _resolves_to(type_name: str) -> Callable[[list[Any]], list[Any]]:
    return lambda items: [i for i in items if reference_type(i) == type_name]


# --------------------------------------------------------------------------------------------
# Compilation of whole expressions (unions), with fhirpathpy as fallback


@dataclass(frozen=True)
class Compiled:
    """A compiled expression: ``get(context) -> raw values``; ``fast`` tells which compiler."""

    get: Getter
    fast: bool


def compile_fast(expression: str, context: str) -> Getter:
    """Translate ``expression`` (evaluated on a value of FHIR type/path ``context``) into a
    plain-Python getter; raises ``Unsupported`` for shapes it does not handle."""
    terms = split_union(expression)
    if not terms:
        raise Unsupported("empty expression")
    getters: list[Getter] = []
    for term in terms:
        compiler = _Compiler(context)
        compiler.compile_term(term)
        getters.append(compiler.finish())
    if len(getters) == 1:
        return getters[0]

    def union(value: Any) -> list[Any]:
        out: list[Any] = []
        for getter in getters:
            out.extend(getter(value))
        return out

    return union


def compile_fallback(expression: str) -> Getter:
    """Compile ``expression`` with fhirpathpy (parsed once; raises on a syntax error)."""
    from fhirpathpy import compile as fhirpath_compile

    _syntax_check(expression)
    function = fhirpath_compile(expression, _fhirpath_model())

    def get(value: Any) -> list[Any]:
        return [_plain(v) for v in function(value, {})]

    return get


def _syntax_check(expression: str) -> None:
    """Parse ``expression`` with fhirpathpy's grammar, raising on any syntax error
    (fhirpathpy's own ``compile`` lets ANTLR recover silently and then never matches)."""
    from antlr4 import CommonTokenStream, InputStream
    from antlr4.error.ErrorListener import ErrorListener
    from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
    from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

    class Raise(ErrorListener):  # type: ignore[misc]
        def syntaxError(self, *args: Any) -> None:  # noqa: N802 - ANTLR's name
            raise Unsupported(f"FHIRPath syntax error: {args[-2]}")

    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(Raise())
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(Raise())
    parser.expression()
    if parser.getCurrentToken().type != -1:  # trailing input the grammar did not consume
        raise Unsupported("FHIRPath syntax error: unexpected trailing input")


def _plain(value: Any) -> Any:
    if value is None or type(value) in (dict, str, int, float, bool, list):
        return value
    data = getattr(value, "data", None)  # fhirpathpy ResourceNode
    if data is not None:
        return data
    return str(value)


def compile_expression(expression: str, context: str) -> Compiled:
    """Compile with the fast path, else with fhirpathpy; raises if neither can."""
    written = _HAND_WRITTEN.get(" ".join(expression.split()))
    if written is not None:
        return Compiled(written(compile_fallback(expression)), True)
    try:
        return Compiled(compile_fast(expression, context), True)
    except Unsupported:
        return Compiled(compile_fallback(expression), False)


def _deceased(general: Getter) -> Getter:
    """``Patient.deceased.exists() and Patient.deceased != false`` (Patient's ``deceased``
    parameter) for the shapes a Patient has: no ``deceased[x]`` is false, ``deceasedBoolean``
    is itself, a ``deceasedDateTime`` is true (a dateTime never equals ``false``). Anything
    else (both variants, a primitive extension ``_deceased...``, a value of another JSON type)
    goes to fhirpathpy, ``general``. fhirpathpy took ~45 us per Patient for it, as long as
    all of the Patient's other parameters together (every new patient an HL7 feed admits)."""

    def get(value: Any) -> list[Any]:
        if type(value) is dict and "_deceasedBoolean" not in value:
            flag = value.get("deceasedBoolean")
            moment = value.get("deceasedDateTime")
            if "_deceasedDateTime" not in value:
                if flag is None and moment is None:
                    return [False]
                if moment is None and type(flag) is bool:
                    return [flag]
                if flag is None and type(moment) is str:
                    return [True]
        return general(value)

    return get


#: Official expressions outside the fast compiler's shapes, each with a plain-Python getter
#: (given fhirpathpy's, for the values it does not handle itself), by their normalised text.
_HAND_WRITTEN: dict[str, Callable[[Getter], Getter]] = {
    "Patient.deceased.exists() and Patient.deceased != false": _deceased,
}


# --------------------------------------------------------------------------------------------
# Conversion of raw values into index rows


def _strings(value: Any) -> list[Row]:
    if type(value) is str:
        return [(fold_string(value), value)] if value.strip() else []
    if type(value) is not dict:
        return []
    texts: list[str] = []
    if "family" in value or "given" in value or "prefix" in value or "suffix" in value:
        keys: tuple[str, ...] = ("family", "given", "prefix", "suffix", "text")
    elif (
        "line" in value
        or "city" in value
        or "postalCode" in value
        or "country" in value
        or "state" in value
        or "district" in value
    ):
        keys = ("line", "city", "district", "state", "postalCode", "country", "text")
    else:
        keys = ("text", "display", "value", "title", "name")
    for key in keys:
        item = value.get(key)
        if type(item) is str:
            texts.append(item)
        elif type(item) is list:
            texts.extend(i for i in item if type(i) is str)
    return [(fold_string(t), t) for t in texts if t.strip()]


def _folded(value: Any) -> str | None:
    return fold_string(value) if type(value) is str and value else None


def _tokens(value: Any) -> list[Row]:
    kind = type(value)
    if kind is str:
        return [(None, value, None)]
    if kind is bool:
        return [(None, "true" if value else "false", None)]
    if kind is int or kind is float or kind is Decimal:
        return [(None, _literal(value), None)]
    if kind is not dict:
        return []
    codings = value.get("coding")
    if codings is not None or ("text" in value and "code" not in value and "value" not in value):
        concept_text = _folded(value.get("text"))
        rows = [
            (c.get("system"), c.get("code"), _folded(c.get("display")) or concept_text)
            for c in codings or ()
            if type(c) is dict and (c.get("code") is not None or c.get("system") is not None)
        ]
        if concept_text is not None and not any(r[2] == concept_text for r in rows):
            rows.append((None, None, concept_text))
        return rows
    if "code" in value:
        code = value.get("code")
        if "value" in value and ("currency" in value or "unit" in value or "comparator" in value):
            return []  # a Quantity: not a token
        return [(value.get("system"), _literal(code), _folded(value.get("display")))]
    if "value" in value:
        identifier_type = value.get("type")
        text = _folded(identifier_type.get("text")) if type(identifier_type) is dict else None
        raw = value["value"]
        if type(raw) is dict:
            return []
        return [(value.get("system"), _literal(raw), text)]
    return []


def parse_reference(ref: str) -> Row:
    """``(target_type, target_id, url, version)`` for a reference or canonical string.

    ``Patient/1`` and ``Patient/1/_history/2`` -> type and id; anything absolute (``http:``,
    ``urn:uuid:``...), a ``#contained`` reference or a search-style reference -> url, with a
    ``|version`` suffix split off into version.
    """
    if ":" not in ref and "#" not in ref and "?" not in ref:
        parts = ref.split("/")
        if len(parts) in (2, 4) and parts[0][:1].isupper() and parts[1]:
            if len(parts) == 2 or parts[2] == "_history":
                return (parts[0], parts[1], None, None)
    url, bar, version = ref.partition("|")
    return (None, None, url, version if bar and version else None)


def _references(value: Any) -> list[Row]:
    if type(value) is str:
        return [parse_reference(value)] if value else []
    if type(value) is dict:
        ref = value.get("reference")
        if type(ref) is str and ref:
            return [parse_reference(ref)]
    return []


def _dates(value: Any) -> list[Row]:
    if type(value) is str:
        period = date_range(value)
        return [period] if period is not None else []
    if type(value) is not dict:
        return []
    if "start" in value or "end" in value:
        start = date_range(value["start"]) if type(value.get("start")) is str else None
        end = date_range(value["end"]) if type(value.get("end")) is str else None
        if start is None and end is None:
            return []
        return [(start[0] if start else MIN_INSTANT, end[1] if end else MAX_INSTANT)]
    events = value.get("event")
    if events:
        return [p for e in events if type(e) is str for p in [date_range(e)] if p is not None]
    repeat = value.get("repeat")
    if type(repeat) is dict and type(repeat.get("boundsPeriod")) is dict:
        return _dates(repeat["boundsPeriod"])
    return []


def _number_or_none(value: Any) -> tuple[float, float, float] | None:
    kind = type(value)
    if kind is int or kind is float or kind is str or kind is Decimal:  # Decimal: fhirpathpy
        try:
            return number_range(str(value) if kind is Decimal else value)
        except ValueError:
            return None
    return None


def _numbers(value: Any) -> list[Row]:
    if type(value) is dict:
        value = value.get("value")
    parsed = _number_or_none(value)
    return [parsed] if parsed is not None else []


ISO_4217 = "urn:iso:std:iso:4217"


def _quantities(value: Any) -> list[Row]:
    if type(value) is not dict:
        parsed = _number_or_none(value)
        return [(*parsed, None, None, None)] if parsed is not None else []
    if "value" in value:
        parsed = _number_or_none(value["value"])
        if parsed is None:
            return []
        if "currency" in value:  # Money
            return [(*parsed, ISO_4217, value.get("currency"), value.get("currency"))]
        return [(*parsed, value.get("system"), value.get("code"), value.get("unit"))]
    low, high = value.get("low"), value.get("high")
    if type(low) is dict or type(high) is dict:  # Range
        low_q = low if type(low) is dict else {}
        high_q = high if type(high) is dict else {}
        low_n = _number_or_none(low_q.get("value"))
        high_n = _number_or_none(high_q.get("value"))
        if low_n is None and high_n is None:
            return []
        unit_of = low_q if low_n is not None else high_q
        return [
            (
                low_n[0] if low_n else high_n[0],  # type: ignore[index]
                low_n[1] if low_n else -1e308,
                high_n[2] if high_n else 1e308,
                unit_of.get("system"),
                unit_of.get("code"),
                unit_of.get("unit"),
            )
        ]
    return []


def _uris(value: Any) -> list[Row]:
    return [(value,)] if type(value) is str and value else []


CONVERTERS: dict[str, Callable[[Any], list[Row]]] = {
    "string": _strings,
    "token": _tokens,
    "reference": _references,
    "date": _dates,
    "number": _numbers,
    "quantity": _quantities,
    "uri": _uris,
}


def _composite_key(kind: str, row: Row) -> Any:
    if kind == "token":
        return row[1]
    if kind == "string":
        return row[0]
    if kind == "uri":
        return row[0]
    if kind == "reference":
        return row[1] or row[2]
    return None


# --------------------------------------------------------------------------------------------
# The extractor


@dataclass(frozen=True)
class _Plan:
    """How to index one parameter of one resource type."""

    code: str
    table: str
    #: Raw values of the parameter (or, for composites, finished rows).
    get: Getter
    #: Raw value -> rows; None when ``get`` already yields rows.
    convert: Callable[[Any], list[Row]] | None
    fast: bool


def _plan(
    definition: SearchParameterDef, registry: SearchParameterRegistry, resource_type: str
) -> _Plan | None:
    """Compile one parameter; None for parameters that have no index rows."""
    if (
        definition.code in UNINDEXED
        or definition.type == "special"
        or definition.expression is None
    ):
        return None
    compiled = compile_expression(definition.expression, resource_type)
    get = compiled.get
    if definition.type == "composite":
        return _composite_plan(definition, registry, resource_type, compiled)
    convert = CONVERTERS.get(definition.type)
    if convert is None:
        raise Unsupported(f"unknown parameter type {definition.type}")

    return _Plan(definition.code, definition.type, get, convert, compiled.fast)


def _composite_plan(
    definition: SearchParameterDef,
    registry: SearchParameterRegistry,
    resource_type: str,
    compiled: Compiled,
) -> _Plan:
    context = _composite_context(definition.expression or resource_type, resource_type)
    parts: list[tuple[str, Getter, Callable[[Any], list[Row]], bool]] = []
    fast = compiled.fast
    for url, expression in definition.components:
        component = registry.by_url(url)
        if component is None or component.type not in CONVERTERS:
            raise Unsupported(f"composite component {url} is unknown")
        # ``%resource.x`` (MolecularSequence's variant coordinates) reads the resource itself.
        on_root = expression.startswith("%resource.") and "|" not in expression
        if on_root:
            part = compile_expression(f"{resource_type}.{expression[10:]}", resource_type)
        else:
            part = compile_expression(expression, context)
        fast = fast and part.fast
        parts.append((component.type, part.get, CONVERTERS[component.type], on_root))
    get = compiled.get
    # Evaluated last component first: that is usually the selective one (value[x] variants).
    reverse = tuple(reversed(parts))

    def rows(resource: dict[str, Any]) -> list[Row]:
        out: list[Row] = []
        for item in get(resource):
            values: list[list[tuple[str, Row]]] = []
            for kind, part_get, convert, on_root in reverse:
                source = resource if on_root else item
                converted = [(kind, r) for v in part_get(source) for r in convert(v)]
                if not converted:
                    break
                values.append(converted)
            else:
                values.reverse()
                for combination in product(*values):
                    first_kind, first_row = combination[0]
                    components = [dict(zip(COLUMNS[k], r, strict=True)) for k, r in combination]
                    out.append(
                        (_composite_key(first_kind, first_row), orjson.dumps(components).decode())
                    )
        return out

    return _Plan(definition.code, "composite", rows, None, fast)


def _composite_context(expression: str, resource_type: str) -> str:
    """The FHIR path of the items a composite's expression yields (``Observation`` or
    ``Observation.component``), which its component expressions are relative to."""
    path = expression.strip()
    if all(c.isalnum() or c in "._" for c in path) and path.split(".")[0] == resource_type:
        model = _model()
        path = model.elsewhere.get(path, path)
        return model.path2type.get(path, path)
    return resource_type


def compile_check(
    definition: SearchParameterDef, registry: SearchParameterRegistry, resource_type: str
) -> str | None:
    """Why ``definition`` cannot be compiled for ``resource_type`` (None when it can)."""
    try:
        _plan(definition, registry, resource_type)
    except Exception as error:  # noqa: BLE001 - any compiler error means "refuse"
        return str(error) or type(error).__name__
    return None


class Extractor:
    """Turns resources into index rows, with plans compiled once per resource type."""

    def __init__(self, registry: SearchParameterRegistry) -> None:
        self.registry = registry
        self._plans: dict[str, tuple[_Plan, ...]] = {}
        self._generation = registry.generation
        self._failed: set[tuple[str, str]] = set()

    def plans(self, resource_type: str) -> tuple[_Plan, ...]:
        if self._generation != self.registry.generation:
            self._plans.clear()
            self._generation = self.registry.generation
        plans = self._plans.get(resource_type)
        if plans is None:
            plans = self._compile(resource_type)
            self._plans[resource_type] = plans
        return plans

    def _compile(self, resource_type: str) -> tuple[_Plan, ...]:
        compiled: list[_Plan] = []
        for definition in self.registry.for_type(resource_type).values():
            try:
                plan = _plan(definition, self.registry, resource_type)
            except Exception as error:  # noqa: BLE001 - never fail a write over an index
                log.warning(
                    "search parameter %s.%s (%s) cannot be compiled, not indexed: %s",
                    resource_type,
                    definition.code,
                    definition.expression,
                    error,
                )
                continue
            if plan is not None:
                compiled.append(plan)
        return tuple(compiled)

    def compile_stats(self, resource_types: Iterable[str] | None = None) -> dict[str, int]:
        """Counts of indexed parameters compiled by the fast path and by fhirpathpy."""
        stats = {"fast": 0, "fallback": 0}
        for resource_type in resource_types or self.registry.resource_types():
            for plan in self.plans(resource_type):
                stats["fast" if plan.fast else "fallback"] += 1
        return stats

    def extract(
        self, resource: dict[str, Any], params: Iterable[str] | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """Index rows of ``resource`` by table kind (``string``, ``token``, ...).

        Each row holds ``resource_type``, ``resource_id``, ``param`` and the table's value
        columns; duplicate values of one parameter are dropped. ``params`` limits extraction to
        those parameter codes (used by a re-index after a SearchParameter is added).
        """
        resource_type = resource.get("resourceType")
        resource_id = resource.get("id")
        out: dict[str, list[dict[str, Any]]] = {}
        if type(resource_type) is not str or type(resource_id) is not str:
            return out
        wanted = None if params is None else set(params)
        for plan in self.plans(resource_type):
            if wanted is not None and plan.code not in wanted:
                continue
            try:
                values = plan.get(resource)
                if not values:
                    continue
                convert = plan.convert
                if convert is None:
                    rows = values
                elif len(values) == 1:
                    rows = convert(values[0])
                else:
                    rows = [row for value in values for row in convert(value)]
            except Exception as error:  # noqa: BLE001 - never fail a write over an index
                key = (resource_type, plan.code)
                if key not in self._failed:
                    self._failed.add(key)
                    log.warning(
                        "search parameter %s.%s failed on %s/%s, skipped: %s",
                        resource_type,
                        plan.code,
                        resource_type,
                        resource_id,
                        error,
                    )
                continue
            if not rows:
                continue
            columns = COLUMNS[plan.table]
            target = out.setdefault(plan.table, [])
            code = plan.code
            for row in dict.fromkeys(rows) if len(rows) > 1 else rows:
                record = {"resource_type": resource_type, "resource_id": resource_id, "param": code}
                record.update(zip(columns, row))  # noqa: B905 - converters match COLUMNS
                target.append(record)
        return out
