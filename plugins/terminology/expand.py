"""Value set expansion as SQL over the concept tables (http://hl7.org/fhir/R4/valueset.html).

Each ``compose.include`` of a loaded code system becomes one ``SELECT`` over
``terminology_concept`` (``concept``, ``filter`` and ``exclude`` are conditions on it, most of
them uncorrelated ``code IN (...)`` subqueries that the closure, word and property indexes
answer); the includes are a ``UNION ALL`` ordered by include and source order, so ``count`` and
``offset`` page in the database and a typeahead over ICD-10-CM reads 20 rows, not 98,000.

Includes the server cannot expand from its tables (a system that is not loaded, enumerated by
``concept``) are taken as listed, and then the whole expansion is paged in Python.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    union_all,
)

from fhirhub.plugins.terminology.model import STOP_WORDS, kept_word, words
from fhirhub.plugins.terminology.service import Terminology
from fhirhub.plugins.terminology.store import Version
from fhirhub.plugins.terminology.tables import (
    closure_table,
    concept_table,
    property_table,
    word_table,
)
from fhirhub.sdk import FhirError, invalid, not_supported

#: Value sets nested deeper than this (``include.valueSet`` chains) are refused.
MAX_DEPTH = 8
#: The longest ``filter`` text accepted, and its most words.
MAX_FILTER_LENGTH = 200
MAX_FILTER_WORDS = 8
#: Codes a ``regex`` filter may select (it is evaluated in Python over the system's codes).
MAX_REGEX_MATCHES = 30_000
#: Expansions up to this size are sorted after their rows are found through the indexes.
SORT_LIMIT = 5_000
#: Text filter candidates passed to SQL as a list (more: as subqueries).
MAX_LISTED = 2_000


@dataclass
class Entry:
    system: str
    version: str | None
    code: str
    display: str | None
    abstract: bool = False
    inactive: bool = False
    designations: str | None = None


@dataclass
class Expansion:
    total: int
    entries: list[Entry]
    used_systems: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Options:
    filter: str | None = None
    count: int | None = None
    offset: int = 0
    active_only: bool = False
    #: Restrict to one code (``$validate-code``): ``(system or None, code)``.
    code: tuple[str | None, str] | None = None


class _Plan:
    def __init__(self) -> None:
        self.selects: list[Select[Any]] = []
        #: The code system url each of ``selects`` reads.
        self.systems: list[str] = []
        self.literal: list[Entry] = []
        self.used: dict[str, str] = {}


def expand(
    service: Terminology, conn: Connection, value_set: dict[str, Any], options: Options
) -> Expansion:
    plan = _Plan()
    _compose(service, conn, value_set, options, plan, depth=0)
    limit = options.count
    if not plan.literal:
        if not plan.selects:
            return Expansion(0, [], sorted(plan.used.items()))
        union = (
            union_all(*plan.selects).subquery()
            if len(plan.selects) > 1
            else plan.selects[0].subquery()
        )
        total = conn.execute(select(func.count()).select_from(union)).scalar_one()
        # ``seq + 0`` is not the indexed column: SQLite then sorts the few rows the filters'
        # indexes found rather than walking every concept in ``seq`` order testing each; for
        # many matches the walk is cheaper (the page fills at once), so the count decides.
        selective = total <= SORT_LIMIT
        seq = union.c.seq + 0 if selective else union.c.seq
        order = (union.c.part, seq) if len(plan.selects) > 1 else (seq,)
        query = select(union).order_by(*order).offset(options.offset)
        if limit is not None:
            query = query.limit(limit)
        entries = [_entry(row) for row in conn.execute(query)]
        return Expansion(total, entries, sorted(plan.used.items()))
    rows: list[Entry] = []
    for query in plan.selects:
        ordered = query.order_by("part", "seq").limit(service.settings.max_expansion + 1)
        rows.extend(_entry(row) for row in conn.execute(ordered))
    rows.extend(_literal_matches(plan.literal, options))
    total = len(rows)
    end = None if limit is None else options.offset + limit
    return Expansion(total, rows[options.offset : end], sorted(plan.used.items()))


def code_queries(
    service: Terminology, conn: Connection, value_set: dict[str, Any]
) -> list[tuple[str, Select[Any]]] | None:
    """The value set's codes as statements, one per include: ``(system, SELECT code ...)``
    over the concept tables, for a search to join (``:in``); None when some include is taken
    as listed (a system that is not loaded), and the expansion must be made here."""
    plan = _Plan()
    _compose(service, conn, value_set, Options(), plan, depth=0)
    if plan.literal:
        return None
    return [
        (system, select(query.subquery().c.code))
        for system, query in zip(plan.systems, plan.selects, strict=True)
    ]


def _entry(row: Any) -> Entry:
    return Entry(
        row.system,
        row.version,
        row.code,
        row.display,
        bool(row.abstract),
        bool(row.inactive),
        row.designations,
    )


def _literal_matches(entries: list[Entry], options: Options) -> list[Entry]:
    out = entries
    if options.filter:
        wanted = words(options.filter)
        out = [
            e
            for e in out
            if all(any(w.startswith(p) for w in words(e.display or e.code)) for p in wanted)
        ]
    if options.code is not None:
        system, code = options.code
        out = [e for e in out if e.code == code and (system is None or e.system == system)]
    return out


def _compose(
    service: Terminology,
    conn: Connection,
    value_set: dict[str, Any],
    options: Options,
    plan: _Plan,
    depth: int,
) -> None:
    if depth > MAX_DEPTH:
        raise invalid(
            f"Value set {value_set.get('url')} nests value sets more than {MAX_DEPTH} deep"
        )
    compose = value_set.get("compose")
    if not isinstance(compose, dict):
        expansion = value_set.get("expansion")
        if isinstance(expansion, dict):  # an expansion given as such
            plan.literal.extend(_contains_entries(expansion.get("contains") or []))
            return
        raise invalid(f"ValueSet {value_set.get('url')} has no compose to expand")
    excludes = [e for e in compose.get("exclude") or [] if isinstance(e, dict)]
    for include in compose.get("include") or []:
        if not isinstance(include, dict):
            continue
        system = include.get("system")
        nested = [str(url) for url in include.get("valueSet") or []]
        if system is None:
            if not nested:
                raise invalid("A compose.include needs a system or a valueSet")
            if excludes:
                raise not_supported("compose.exclude with an include of value sets only")
            for url in nested:
                _compose(service, conn, service.value_set(url), options, plan, depth + 1)
            continue
        if nested:
            raise not_supported(
                "compose.include with both a system and valueSet (an intersection) is not supported"
            )
        version = store_version(service, conn, system, include.get("version"), include)
        if version is None:
            plan.literal.extend(
                Entry(system, include.get("version"), c["code"], c.get("display"))
                for c in include.get("concept") or []
                if isinstance(c, dict) and isinstance(c.get("code"), str)
            )
            continue
        plan.used[version.url] = version.version
        condition = _include_condition(conn, version, include)
        for exclude in excludes:
            if exclude.get("system") != system:
                continue
            excluded = store_version(service, conn, system, exclude.get("version"), exclude)
            if excluded is not None and excluded.key == version.key:
                condition = and_(condition, not_(_include_condition(conn, version, exclude)))
        plan.selects.append(
            _select(conn, version, condition, options, part=len(plan.selects), include=include)
        )
        plan.systems.append(version.url)


def store_version(
    service: Terminology,
    conn: Connection,
    system: str,
    version: str | None,
    include: dict[str, Any],
) -> Version | None:
    """The loaded version an include reads; None when the system is not loaded and the include
    enumerates its codes (taken as listed); 404 when it would need the system's content."""
    try:
        return service.code_system(conn, system, version)
    except FhirError:
        if include.get("concept") and not include.get("filter"):
            return None
        raise


def _include_condition(
    conn: Connection, version: Version, include: dict[str, Any]
) -> ColumnElement[bool]:
    key = version.key
    conds: list[ColumnElement[bool]] = []
    listed = [c.get("code") for c in include.get("concept") or [] if isinstance(c, dict)]
    if listed:
        conds.append(concept_table.c.code.in_([c for c in listed if isinstance(c, str)]))
    for item in include.get("filter") or []:
        if not isinstance(item, dict):
            raise invalid("compose filter must be an object")
        conds.append(_filter(conn, key, item))
    return and_(true(), *conds)


def _closure_codes(key: int, code: str) -> Any:
    return select(closure_table.c.code).where(
        closure_table.c.version_key == key, closure_table.c.ancestor == code
    )


def _filter(conn: Connection, key: int, item: dict[str, Any]) -> ColumnElement[bool]:
    prop, op, value = item.get("property"), item.get("op"), item.get("value")
    if not isinstance(prop, str) or not isinstance(op, str) or not isinstance(value, str):
        raise invalid("A compose filter needs property, op and value")
    code_col = concept_table.c.code
    hierarchy = prop in ("concept", "code", "parent", "child")
    if op in ("is-a", "descendent-of", "is-not-a") and hierarchy:
        if op == "descendent-of":
            return code_col.in_(_closure_codes(key, value))
        # One IN over (descendants + the code), not an OR, so that the index answers it.
        is_a = code_col.in_(union_all(_closure_codes(key, value), select(literal(value))))
        return is_a if op == "is-a" else not_(is_a)
    if op == "generalizes" and hierarchy:
        above = select(closure_table.c.ancestor).where(
            closure_table.c.version_key == key, closure_table.c.code == value
        )
        return or_(code_col == value, code_col.in_(above))
    if op in ("in", "not-in"):
        values = [v.strip() for v in value.split(",") if v.strip()]
        cond = (
            code_col.in_(values) if hierarchy else code_col.in_(_with_property(key, prop, values))
        )
        return cond if op == "in" else not_(cond)
    if op == "=":
        if prop in ("concept", "code"):
            return code_col == value
        if prop == "display":
            return concept_table.c.display == value
        return code_col.in_(_with_property(key, prop, [value]))
    if op == "exists":
        present = code_col.in_(
            select(property_table.c.code).where(
                property_table.c.version_key == key, property_table.c.property == prop
            )
        )
        return present if value == "true" else not_(present)
    if op == "regex":
        return code_col.in_(_regex_codes(conn, key, prop, value))
    raise not_supported(f"Filter operator {op!r} on property {prop!r} is not supported")


def _with_property(key: int, prop: str, values: Sequence[str]) -> Any:
    return select(property_table.c.code).where(
        property_table.c.version_key == key,
        property_table.c.property == prop,
        property_table.c.value.in_(list(values)),
    )


def _regex_codes(conn: Connection, key: int, prop: str, pattern: str) -> list[str]:
    if len(pattern) > 200:
        raise invalid("A regex filter is limited to 200 characters")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise invalid(f"Invalid regex {pattern!r}: {exc}") from None
    if prop in ("code", "concept"):
        pairs = conn.execute(
            select(concept_table.c.code, concept_table.c.code).where(
                concept_table.c.version_key == key
            )
        )
    elif prop == "display":
        pairs = conn.execute(
            select(concept_table.c.code, concept_table.c.display).where(
                concept_table.c.version_key == key
            )
        )
    else:
        pairs = conn.execute(
            select(property_table.c.code, property_table.c.value).where(
                property_table.c.version_key == key, property_table.c.property == prop
            )
        )
    matched = [code for code, text in pairs if text is not None and compiled.fullmatch(text)]
    if len(matched) > MAX_REGEX_MATCHES:
        raise FhirError(400, "The regex selects too many codes; narrow it", code="too-costly")
    return matched


def filter_condition(conn: Connection, key: int, text: str) -> ColumnElement[bool]:
    """Every word of ``text`` starts a word of the concept's display or a designation. The
    candidates of each word come from the word index (a range scan each) and are intersected
    here, so that the query proper is a primary-key lookup per match."""
    if len(text) > MAX_FILTER_LENGTH:
        raise FhirError(
            400, f"filter is limited to {MAX_FILTER_LENGTH} characters", code="too-costly"
        )
    given = list(dict.fromkeys(words(text)))
    wanted = [w for w in given if kept_word(w)]
    if not wanted:  # a single letter typed so far: a prefix of longer words
        wanted = [w for w in given if w not in STOP_WORDS]
    if len(wanted) > MAX_FILTER_WORDS:
        raise FhirError(400, f"filter is limited to {MAX_FILTER_WORDS} words", code="too-costly")
    if not wanted:
        return true() if given else false()  # only common words: they narrow nothing
    subqueries = [
        select(word_table.c.code).where(
            word_table.c.version_key == key,
            word_table.c.word >= prefix,
            word_table.c.word < prefix[:-1] + chr(ord(prefix[-1]) + 1),
        )
        for prefix in sorted(wanted, key=len, reverse=True)  # the longest narrows most
    ]
    if len(subqueries) > 1:
        # Several words: the candidates of the word with the fewest (counted up to
        # MAX_LISTED + 1 each) from the index, then the other words checked here on those
        # concepts' texts: SQLite would drive the intersection from whichever word it likes,
        # "2" or "type" as well as "diab".
        sizes = [
            conn.execute(
                select(func.count()).select_from(subquery.limit(MAX_LISTED + 1).subquery())
            ).scalar_one()
            for subquery in subqueries
        ]
        lead = min(range(len(subqueries)), key=lambda i: sizes[i])
        if sizes[lead] <= MAX_LISTED:
            candidates = list(conn.execute(subqueries[lead]).scalars())
            ordered = sorted(wanted, key=len, reverse=True)
            rest = [w for i, w in enumerate(ordered) if i != lead]
            texts = conn.execute(
                select(
                    concept_table.c.code, concept_table.c.display, concept_table.c.designations
                ).where(concept_table.c.version_key == key, concept_table.c.code.in_(candidates))
            )
            kept = [
                code
                for code, display, designations in texts
                if _has_prefixes(f"{display or ''} {designations or ''}", rest)
            ]
            return concept_table.c.code.in_(kept) if kept else false()
    return and_(*(concept_table.c.code.in_(subquery) for subquery in subqueries))


def _has_prefixes(text: str, prefixes: list[str]) -> bool:
    present = words(text)
    return all(any(w.startswith(p) for w in present) for p in prefixes)


def _select(
    conn: Connection,
    version: Version,
    condition: ColumnElement[bool],
    options: Options,
    part: int,
    include: dict[str, Any],
) -> Select[Any]:
    conds: list[ColumnElement[bool]] = [concept_table.c.version_key == version.key, condition]
    if options.filter:
        conds.append(filter_condition(conn, version.key, options.filter))
    if options.active_only:
        conds.append(concept_table.c.inactive.is_(False))
    if options.code is not None:
        system, code = options.code
        if system is not None and system != version.url:
            conds.append(false())
        conds.append(concept_table.c.code == code)
    return select(
        literal(version.url).label("system"),
        literal(version.version).label("version"),
        concept_table.c.code,
        concept_table.c.display,
        concept_table.c.abstract,
        concept_table.c.inactive,
        concept_table.c.designations,
        literal(part).label("part"),
        concept_table.c.seq,
    ).where(*conds)


def _contains_entries(contains: list[Any]) -> list[Entry]:
    out: list[Entry] = []
    for item in contains:
        if not isinstance(item, dict):
            continue
        if item.get("code") and item.get("system"):
            out.append(
                Entry(item["system"], item.get("version"), item["code"], item.get("display"))
            )
        out.extend(_contains_entries(item.get("contains") or []))
    return out
