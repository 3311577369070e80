"""FHIR search, the read side: a search request -> SQL over the index tables -> searchset Bundle.

http://hl7.org/fhir/R4/search.html. ``search`` serves type-level (``/Observation?...``),
system-level (``/?_type=...``) and compartment (``/Patient/1/Observation``) searches;
``everything`` serves ``Patient/{id}/$everything``. Filters become conditions on
``resource_current`` (``predicates``), results are read in one ordered, limited query and the
Bundle is spliced from the stored bytes (``bundle``), so a page costs one count query, one page
query and one query per ``_include``/``_revinclude`` round.

Paging (#paging): pages are offsets over a deterministic order (the ``_sort`` keys, then
resource type and id as tie-breakers). Links carry the request's parameters plus ``_count`` and
``_offset``: ``self``, ``first``, ``next``, ``previous`` and (when the total is known) ``last``.
Offsets over a changing result set may skip or repeat a resource between pages; the order
itself is stable.

Handling (#errors): under the default lenient handling, unknown or unsupported parameters are
ignored, reported in an OperationOutcome entry (``search.mode = outcome``) and dropped from the
links; with ``strict`` (``Prefer: handling=strict``) they are a 400. Malformed values, unknown
modifiers and unknown prefixes are always a 400.

``_total``: ``accurate`` and ``estimate`` both count exactly (one indexed ``COUNT``), ``none``
omits ``total``; the default counts.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import (
    ColumnElement,
    Connection,
    String,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    tuple_,
    union,
)

from fhirhub.fhir_store.encryption import opened
from fhirhub.fhir_store.errors import FhirError, Issue
from fhirhub.fhir_store.projections import (
    checked_columns,
    joined_with_log,
    refuse_row,
    row_matches_log,
)
from fhirhub.fhir_store.schema import resource_current
from fhirhub.fhir_store.search import bundle
from fhirhub.fhir_store.search import compartment as compartments
from fhirhub.fhir_store.search.elements import Subsetter, parse_elements
from fhirhub.fhir_store.search.index_tables import index_date, index_reference
from fhirhub.fhir_store.search.parameters import SearchParameterRegistry
from fhirhub.fhir_store.search.predicates import (
    SORT_COLUMNS,
    Owner,
    Predicates,
    UnknownParameter,
    bad_request,
    too_costly,
)
from fhirhub.fhir_store.search.visibility import Visibility, restrict

rc = resource_current

#: Result parameters (http://hl7.org/fhir/R4/search.html#return) and paging, by base name.
RESULT_PARAMS = frozenset(
    {
        "_sort",
        "_count",
        "_offset",
        "_after",
        "_total",
        "_summary",
        "_elements",
        "_include",
        "_revinclude",
    }
)
#: Parameters that belong to the HTTP layer (format negotiation); ignored silently.
TRANSPORT_PARAMS = frozenset({"_format", "_pretty"})
#: Result parameters that are recognised but not provided (ignored with a warning).
UNSUPPORTED_RESULT_PARAMS = frozenset({"_contained", "_containedType", "_score", "_graph"})

#: How many rounds of ``:iterate`` includes are followed (the spec lets servers bound it).
MAX_INCLUDE_ROUNDS = 8
#: Resources fetched per IN-list when reading included resources.
FETCH_CHUNK = 500
#: ``_sort`` keys per search: each is a correlated lookup per matching resource, so 400 keys
#: took 47 s on a tenant's data.
MAX_SORT_KEYS = 5
#: The deepest ``_offset`` served: the database reads and discards every skipped row, and an
#: offset past 2**63 overflowed into a 500. The default order pages past it with ``_after``
#: (its ``next`` links carry one); a sorted search this deep should narrow its criteria.
MAX_OFFSET = 100_000

#: $everything pulls these in when compartment members reference them
#: (http://hl7.org/fhir/R4/patient-operation-everything.html).
EVERYTHING_REFERENCED = (
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "Medication",
)
#: Date parameters that carry a resource's date of care, for ``$everything``'s ``start`` and
#: ``end`` ("care dates, not record currency dates"): Observation/Encounter/Procedure
#: ``date``, Condition ``onset-date``, MedicationRequest ``authoredon``...
CARE_DATE_PARAMS = (
    "date",
    "onset-date",
    "effective",
    "effective-time",
    "authoredon",
    "authored",
    "occurrence",
    "whenhandedover",
    "created",
    "period",
    "sent",
)


# --------------------------------------------------------------------------------------------
# Request parsing


@dataclass
class _Request:
    filters: list[tuple[str, str]] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)  # echoed in links
    count: int = 20
    offset: int = 0
    after: tuple[str, str] | None = None  # keyset cursor for the default order
    total: str = "accurate"
    summary: str | None = None
    elements: list[str] | None = None
    sort: str | None = None
    includes: list[tuple[str, str, bool]] = field(default_factory=list)  # (kind, value, iterate)
    warnings: list[Issue] = field(default_factory=list)
    types: tuple[str, ...] | None = None


def _int_value(name: str, value: str, low: int, high: int | None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise bad_request(f"{name} must be an integer, not {value!r}") from None
    if number < low:
        raise bad_request(f"{name} must be at least {low}, not {value!r}")
    return number if high is None else min(number, high)


def _parse_request(
    params: Sequence[tuple[str, str]],
    *,
    default_count: int,
    max_count: int,
    strict: bool,
    known_types: frozenset[str],
    system_level: bool,
) -> _Request:
    request = _Request(count=min(default_count, max_count))
    elements: list[str] = []
    for name, value in params:
        if "\x00" in name or "\x00" in value:
            # No FHIR string holds a NUL, and SQLite's LIKE stops at one (``:contains=%00``
            # would match everything): refuse it wherever the parameters came from.
            raise bad_request(f"Search parameter {name!r} contains a NUL character")
        base = name.split(":", 1)[0]
        if base in TRANSPORT_PARAMS:
            continue
        if base in UNSUPPORTED_RESULT_PARAMS:
            _unknown(request, strict, name, f"Parameter {name!r} is not supported")
            continue
        if base == "_type" and system_level:
            types = tuple(t for t in value.split(",") if t)
            for t in types:
                if t not in known_types:
                    raise bad_request(f"Unknown resource type {t!r} in _type")
            request.types = tuple(dict.fromkeys((request.types or ()) + types))
            request.kept.append((name, value))
            continue
        if base not in RESULT_PARAMS:
            request.filters.append((name, value))
            continue
        if base == "_count":
            request.count = _int_value("_count", value, 0, max_count)
            continue
        if base == "_offset":
            request.offset = _int_value("_offset", value, 0, None)
            continue
        if base == "_after":
            after_type, slash, after_id = value.partition("/")
            if not slash or not after_type or not after_id:
                raise bad_request(f"_after must be Type/id, not {value!r}")
            request.after = (after_type, after_id)
            continue
        request.kept.append((name, value))
        if base == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise bad_request(f"_total must be none, estimate or accurate, not {value!r}")
            request.total = value
        elif base == "_summary":
            request.summary = value
        elif base == "_elements":
            elements.append(value)
        elif base == "_sort":
            request.sort = value
        else:  # _include / _revinclude
            modifier = name.split(":", 1)[1] if ":" in name else None
            if modifier not in (None, "iterate", "recurse"):
                raise bad_request(f"Unknown modifier {modifier!r} on {base}")
            request.includes.append((base, value, modifier is not None))
    request.elements = parse_elements(elements)
    return request


def _unknown(request: _Request, strict: bool, name: str, reason: str) -> None:
    if strict:
        raise FhirError(400, reason, code="not-supported")
    request.warnings.append(Issue("warning", "not-supported", f"{reason}; ignored"))


# --------------------------------------------------------------------------------------------
# Sorting


def _sort_keys(
    registry: SearchParameterRegistry, owner: Owner, sort: str | None
) -> list[ColumnElement[Any]]:
    """ORDER BY terms for ``_sort`` (http://hl7.org/fhir/R4/search.html#sort): ascending sorts
    by each resource's lowest value of the parameter, descending by its highest; resources
    without a value come last; resource type and id break ties so pages are stable."""
    keys: list[ColumnElement[Any]] = []
    items = [item.strip() for item in (sort or "").split(",") if item.strip()]
    if len(items) > MAX_SORT_KEYS:
        raise too_costly(f"_sort takes at most {MAX_SORT_KEYS} keys, not {len(items)}")
    for item in items:
        descending = item.startswith("-")
        code = item[1:] if descending else item
        if code == "_id":
            column: ColumnElement[Any] = owner.id_col
        elif code == "_lastUpdated":
            column = owner.updated_col
        else:
            if owner.resource_type is None:
                raise bad_request(f"Cannot sort a system-level search by {code!r}")
            definition = registry.get(owner.resource_type, code)
            if definition is None:
                raise bad_request(f"Unknown sort parameter {code!r} for {owner.resource_type}")
            columns = SORT_COLUMNS.get(definition.type)
            if columns is None or definition.expression is None:
                raise bad_request(f"Cannot sort by {definition.type} parameter {code!r}")
            low, high = columns
            target = high if descending else low
            table = target.table
            aggregate = func.max(target) if descending else func.min(target)
            column = (
                select(aggregate)
                .where(
                    table.c.resource_type == owner.type_col,
                    table.c.resource_id == owner.id_col,
                    table.c.param == code,
                )
                .scalar_subquery()
            )
        keys.append((column.desc() if descending else column.asc()).nulls_last())
    keys.extend([owner.type_col.asc(), owner.id_col.asc()])
    return keys


# --------------------------------------------------------------------------------------------
# Reading resources


def _now() -> tuple[int, str]:
    now = time.time_ns() // 1000
    instant = _dt.datetime.fromtimestamp(now / 1e6, tz=_dt.UTC)
    return now, instant.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fetch(
    conn: Connection,
    keys: Iterable[tuple[str, str]],
    visibility: Visibility | None = None,
) -> dict[tuple[str, str], bytes]:
    """Stored bytes of the (not deleted) resources ``keys`` that ``visibility`` lets the caller
    see, read by primary key."""
    by_type: dict[str, list[str]] = {}
    for resource_type, resource_id in keys:
        by_type.setdefault(resource_type, []).append(resource_id)
    out: dict[tuple[str, str], bytes] = {}
    for resource_type, ids in by_type.items():
        for start in range(0, len(ids), FETCH_CHUNK):
            chunk = ids[start : start + FETCH_CHUNK]
            rows = conn.execute(
                select(rc.c.resource_id, rc.c.content, *checked_columns())
                .select_from(joined_with_log())
                .where(
                    rc.c.resource_type == resource_type,
                    rc.c.resource_id.in_(chunk),
                    rc.c.deleted.is_(False),
                    *restrict(Owner(rc, resource_type), visibility),
                )
            )
            for row in rows:
                resource_id, content = row.resource_id, row.content
                if not row_matches_log(row, resource_type, resource_id, content):
                    refuse_row(conn, resource_type, resource_id)
                    continue
                plain = opened(conn, content)
                if plain is not None:
                    out[(resource_type, resource_id)] = plain
    return out


def _targets_of(
    conn: Connection,
    sources: Sequence[tuple[str, str]],
    source_type: str,
    code: str | None,
    target_type: str | None,
) -> list[tuple[str, str]]:
    ids = [i for t, i in sources if t == source_type]
    ref = index_reference.c
    out: list[tuple[str, str]] = []
    for start in range(0, len(ids), FETCH_CHUNK):
        query = select(ref.target_type, ref.target_id).where(
            ref.resource_type == source_type,
            ref.resource_id.in_(ids[start : start + FETCH_CHUNK]),
            ref.target_id.is_not(None),
        )
        if code is not None:
            query = query.where(ref.param == code)
        if target_type is not None:
            query = query.where(ref.target_type == target_type)
        out.extend((t, i) for t, i in conn.execute(query))
    return out


def _referrers_of(
    conn: Connection,
    targets: Sequence[tuple[str, str]],
    source_type: str,
    code: str | None,
    target_type: str | None,
) -> list[tuple[str, str]]:
    by_type: dict[str, list[str]] = {}
    for t, i in targets:
        if target_type is None or t == target_type:
            by_type.setdefault(t, []).append(i)
    ref = index_reference.c
    out: list[tuple[str, str]] = []
    for t, ids in by_type.items():
        for start in range(0, len(ids), FETCH_CHUNK):
            query = select(ref.resource_type, ref.resource_id).where(
                ref.target_type == t,
                ref.target_id.in_(ids[start : start + FETCH_CHUNK]),
                ref.resource_type == source_type,
            )
            if code is not None:
                query = query.where(ref.param == code)
            out.extend((st, si) for st, si in conn.execute(query))
    return out


@dataclass(frozen=True)
class _Include:
    kind: str  # _include | _revinclude
    source_type: str
    code: str | None  # None for '*'
    target_type: str | None
    iterate: bool


def _parse_includes(
    registry: SearchParameterRegistry, known: frozenset[str], items: list[tuple[str, str, bool]]
) -> list[_Include]:
    out: list[_Include] = []
    for kind, value, iterate in items:
        for spec in value.split(","):
            parts = spec.split(":")
            if len(parts) not in (2, 3) or not all(parts):
                raise bad_request(f"Invalid {kind} value {spec!r} (Type:param[:targetType])")
            source_type, code = parts[0], parts[1]
            target_type = parts[2] if len(parts) == 3 else None
            if source_type not in known:
                raise bad_request(f"Unknown resource type {source_type!r} in {kind}")
            if target_type is not None and target_type not in known:
                raise bad_request(f"Unknown resource type {target_type!r} in {kind}")
            if code != "*":
                definition = registry.get(source_type, code)
                if definition is None or definition.type != "reference":
                    raise bad_request(f"{source_type} has no reference parameter {code!r}")
            out.append(
                _Include(kind, source_type, None if code == "*" else code, target_type, iterate)
            )
    return out


def _included(
    conn: Connection,
    includes: list[_Include],
    matched: Sequence[tuple[str, str]],
) -> list[tuple[str, str]]:
    """Keys of the resources ``_include``/``_revinclude`` add to a page (excluding matches),
    following ``:iterate`` ones over newly included resources (#revinclude)."""
    seen = set(matched)
    added: list[tuple[str, str]] = []
    frontier = list(matched)
    rounds = 0
    active = includes
    while frontier and active and rounds < MAX_INCLUDE_ROUNDS:
        found: list[tuple[str, str]] = []
        for inc in active:
            if inc.kind == "_include":
                found.extend(
                    _targets_of(conn, frontier, inc.source_type, inc.code, inc.target_type)
                )
            else:
                found.extend(
                    _referrers_of(conn, frontier, inc.source_type, inc.code, inc.target_type)
                )
        new = sorted({key for key in found if key not in seen})
        seen.update(new)
        added.extend(new)
        frontier = new
        active = [inc for inc in includes if inc.iterate]
        rounds += 1
    return added


# --------------------------------------------------------------------------------------------
# Search


@dataclass
class _Plan:
    """A parsed search: its result parameters and the SQL conditions of its filters."""

    request: _Request
    owner: Owner
    conditions: list[ColumnElement[bool]]
    kept_filters: list[tuple[str, str]]
    now_text: str


def _plan(
    conn: Connection,
    registry: SearchParameterRegistry,
    resource_type: str | None,
    params: Sequence[tuple[str, str]],
    *,
    base_url: str,
    compartment: tuple[str, str] | None,
    strict: bool,
    default_count: int,
    max_count: int,
    visibility: Visibility | None,
) -> _Plan:
    known = frozenset(registry.resource_types())
    if resource_type is not None and resource_type not in known:
        raise FhirError(404, f"Unknown resource type {resource_type!r}", code="not-supported")
    request = _parse_request(
        params,
        default_count=default_count,
        max_count=max_count,
        strict=strict,
        known_types=known,
        system_level=resource_type is None,
    )
    now_us, now_text = _now()
    owner = Owner(rc, resource_type, request.types if resource_type is None else None)
    predicates = Predicates(conn, registry, base_url=base_url, now_us=now_us, visibility=visibility)
    conditions: list[ColumnElement[bool]] = [rc.c.deleted.is_(False)]
    if resource_type is not None:
        conditions.append(rc.c.resource_type == resource_type)
    elif request.types is not None:
        conditions.append(rc.c.resource_type.in_(request.types))
    if compartment is not None:
        conditions.append(compartments.condition(owner, compartment))
    conditions.extend(restrict(owner, visibility))
    kept_filters: list[tuple[str, str]] = []
    for name, value in request.filters:
        try:
            conditions.append(predicates.condition(owner, name, value))
        except UnknownParameter as unknown:
            _unknown(request, strict, name, unknown.reason)
            continue
        kept_filters.append((name, value))
    return _Plan(request, owner, conditions, kept_filters, now_text)


def _plan_in_process(
    conn: Connection,
    registry: SearchParameterRegistry,
    resource_type: str | None,
    params: Sequence[tuple[str, str]],
    strict: bool,
    default_count: int,
    max_count: int,
    visibility: Visibility | None,
) -> _Plan:
    """A plan for a search that builds no Bundle (no links, so no base URL or compartment)."""
    return _plan(
        conn,
        registry,
        resource_type,
        params,
        base_url="",
        compartment=None,
        strict=strict,
        default_count=default_count,
        max_count=max_count,
        visibility=visibility,
    )


def matching_ids(
    conn: Connection,
    registry: SearchParameterRegistry,
    resource_type: str,
    params: Sequence[tuple[str, str]],
    *,
    limit: int,
    visibility: Visibility | None = None,
) -> list[str]:
    """Ids of the first ``limit`` resources matching ``params`` (strictly parsed: an unknown
    parameter is a 400, never a silent match-everything), in id order, without reading or
    serialising any content: what conditional create, update and delete need."""
    plan = _plan_in_process(conn, registry, resource_type, params, True, limit, limit, visibility)
    query = select(rc.c.resource_id).where(*plan.conditions).order_by(rc.c.resource_id).limit(limit)
    return [row[0] for row in conn.execute(query)]


def search_rows(
    conn: Connection,
    registry: SearchParameterRegistry,
    resource_type: str | None,
    params: Sequence[tuple[str, str]],
    *,
    default_count: int = 20,
    max_count: int = 1000,
    visibility: Visibility | None = None,
) -> list[bytes]:
    """The stored content of the first page of matches (``_count``, ``_offset`` and
    ``_sort`` apply; ``_include`` and totals do not): the in-process search of plugins,
    which want resources rather than a searchset Bundle."""
    plan = _plan_in_process(
        conn, registry, resource_type, params, False, default_count, max_count, visibility
    )
    order = _sort_keys(registry, plan.owner, plan.request.sort)
    query = (
        select(rc.c.resource_type, rc.c.resource_id, rc.c.content, *checked_columns())
        .select_from(joined_with_log())
        .where(*plan.conditions)
        .order_by(*order)
        .limit(plan.request.count)
        .offset(plan.request.offset)
    )
    out: list[bytes] = []
    for row in conn.execute(query):  # each row's own type: a system-level search mixes them
        if not row_matches_log(row, row.resource_type, row.resource_id, row.content):
            refuse_row(conn, row.resource_type, row.resource_id)
            continue
        plain = opened(conn, row.content)
        if plain is not None:
            out.append(plain)
    return out


def search(
    conn: Connection,
    registry: SearchParameterRegistry,
    resource_type: str | None,
    params: list[tuple[str, str]],
    *,
    base_url: str,
    compartment: tuple[str, str] | None = None,
    strict: bool = False,
    default_count: int = 20,
    max_count: int = 1000,
    visibility: Visibility | None = None,
) -> bytes:
    """Run a search and return the JSON bytes of its ``searchset`` Bundle.

    ``resource_type`` None is a system-level search (restricted by ``_type`` when given);
    ``compartment`` (``("Patient", "123")``) restricts to that compartment. ``params`` are the
    decoded query parameters in request order. Raises ``FhirError`` (400) as described in the
    module docstring. ``visibility`` restricts matches, totals and included resources to what
    the caller may see.
    """
    base_url = base_url.rstrip("/")
    known = frozenset(registry.resource_types())
    plan = _plan(
        conn,
        registry,
        resource_type,
        params,
        base_url=base_url,
        compartment=compartment,
        strict=strict,
        default_count=default_count,
        max_count=max_count,
        visibility=visibility,
    )
    request, owner, conditions, kept_filters, now_text = (
        plan.request,
        plan.owner,
        plan.conditions,
        plan.kept_filters,
        plan.now_text,
    )
    subsetter = Subsetter(request.summary, request.elements)
    includes = _parse_includes(registry, known, request.includes)
    order = _sort_keys(registry, owner, request.sort)

    count_only = request.summary == "count"
    total: int | None = None
    if request.total != "none" or count_only:
        total = conn.execute(select(func.count()).select_from(rc).where(*conditions)).scalar_one()
    page_size = 0 if count_only else request.count
    rows: list[Any] = []
    has_more = False
    # In the default order (type, id) a next page continues after the previous page's last key
    # (``_after``) instead of skipping ``_offset`` rows, so paging through N results is O(N).
    keyset = request.sort is None and request.after is not None
    if page_size:
        query = (
            select(rc.c.resource_type, rc.c.resource_id, rc.c.content, *checked_columns())
            .select_from(joined_with_log())
            .where(*conditions)
            .order_by(*order)
            .limit(page_size + 1 if total is None else page_size)
        )
        if keyset:
            assert request.after is not None
            after_type, after_id = request.after
            if resource_type is not None:
                if after_type == resource_type:
                    query = query.where(rc.c.resource_id > after_id)
            else:
                query = query.where(
                    or_(
                        rc.c.resource_type > after_type,
                        and_(rc.c.resource_type == after_type, rc.c.resource_id > after_id),
                    )
                )
        else:
            query = query.offset(_served_offset(request.offset))
        rows = list(conn.execute(query))
        if total is None:
            has_more = len(rows) > page_size
            rows = rows[:page_size]
        else:
            has_more = request.offset + page_size < total

    entries: list[bytes] = []
    if request.warnings:
        entries.append(bundle.outcome_entry(request.warnings))
    rows = _served(conn, rows)
    for row in rows:
        content = subsetter.apply(row.resource_type, opened(conn, row.content) or b"{}")
        entries.append(
            bundle.entry(base_url, row.resource_type, row.resource_id, content, bundle.MATCH)
        )
    if includes and rows:
        added = _included(conn, includes, [(r.resource_type, r.resource_id) for r in rows])
        contents = _fetch(conn, added, visibility)
        for key in added:
            stored = contents.get(key)
            if stored is not None:
                content = subsetter.apply(key[0], stored)
                entries.append(bundle.entry(base_url, key[0], key[1], content, bundle.INCLUDE))

    path = _path(base_url, resource_type, compartment)
    echoed = kept_filters + request.kept
    cursor = (
        (rows[-1].resource_type, rows[-1].resource_id) if rows and request.sort is None else None
    )
    links = _links(path, echoed, request.count, request.offset, total, has_more, count_only, cursor)
    return bundle.searchset(total=total, links=links, entries=entries, last_updated=now_text)


def _served(conn: Connection, rows: list[Any]) -> list[Any]:
    """The result rows that match their log entries (fhir_store.projections): a current row
    whose content or tenant was changed outside the hub is left out, with an alarm."""
    out = []
    for row in rows:
        if row_matches_log(row, row.resource_type, row.resource_id, row.content):
            out.append(row)
        else:
            refuse_row(conn, row.resource_type, row.resource_id)
    return out


def _served_offset(offset: int) -> int:
    if offset > MAX_OFFSET:
        raise too_costly(
            f"_offset {offset} is past the deepest page served ({MAX_OFFSET}); narrow the "
            "search, or page in the default order (its next links continue with _after)"
        )
    return offset


def _path(base_url: str, resource_type: str | None, compartment: tuple[str, str] | None) -> str:
    if compartment is not None:
        return f"{base_url}/{compartment[0]}/{compartment[1]}/{resource_type or '*'}"
    return f"{base_url}/{resource_type}" if resource_type else base_url


def _links(
    path: str,
    echoed: list[tuple[str, str]],
    count: int,
    offset: int,
    total: int | None,
    has_more: bool,
    count_only: bool,
    cursor: tuple[str, str] | None = None,
) -> list[dict[str, str]]:
    """Paging links. ``_offset`` positions every page; the ``next`` link of a search in the
    default order also carries ``_after`` (the last key of this page), which the next request
    uses instead of the offset."""

    def link(
        relation: str, page_offset: int, after: tuple[str, str] | None = None
    ) -> dict[str, str]:
        query = [*echoed, ("_count", str(count))]
        if page_offset:
            query.append(("_offset", str(page_offset)))
        if after is not None:
            query.append(("_after", f"{after[0]}/{after[1]}"))
        return {"relation": relation, "url": f"{path}?{urlencode(query)}"}

    links = [link("self", offset)]
    if count_only or count == 0:
        return links
    links.append(link("first", 0))
    if offset > 0:
        links.append(link("previous", max(0, offset - count)))
    if has_more and (cursor is not None or offset + count <= MAX_OFFSET):
        links.append(link("next", offset + count, cursor))
    last = ((total - 1) // count) * count if total else 0
    if total and last <= MAX_OFFSET:
        links.append(link("last", last))
    return links


# --------------------------------------------------------------------------------------------
# Patient/$everything


def everything(
    conn: Connection,
    registry: SearchParameterRegistry,
    patient_id: str,
    *,
    base_url: str,
    params: list[tuple[str, str]],
    default_count: int = 100,
    max_count: int = 1000,
    visibility: Visibility | None = None,
    linked: Sequence[str] = (),
) -> bytes:
    """``Patient/{id}/$everything`` (http://hl7.org/fhir/R4/patient-operation-everything.html):
    the patient, every resource in its compartment, and the Practitioners, PractitionerRoles,
    Organizations, Locations and Medications those resources reference, as a ``searchset``
    Bundle paged with ``_count``/``_offset``. ``_since`` keeps resources updated at or after
    that instant; ``_type`` keeps only the listed types; ``start`` and ``end`` keep resources
    whose care dates overlap that range (:func:`_cared_for_between`). The patient comes first,
    then the rest ordered by type and id.
    ``linked``: other records of the same person (the caller checked each is visible) whose
    compartments are included too (``_mdm=true``).
    """
    base_url = base_url.rstrip("/")
    known = frozenset(registry.resource_types())
    count = min(default_count, max_count)
    offset = 0
    since: int | None = None
    care_from: int | None = None
    care_to: int | None = None
    types: list[str] | None = None
    kept: list[tuple[str, str]] = []
    from fhirhub.fhir_store.search.predicates import parse_date

    for name, value in params:
        if name == "_count":
            count = _int_value("_count", value, 0, max_count)
        elif name == "_offset":
            offset = _int_value("_offset", value, 0, None)
        elif name == "_since":
            since = parse_date(value)[0]
            kept.append((name, value))
        elif name == "start":
            care_from = parse_date(value)[0]
            kept.append((name, value))
        elif name == "end":
            care_to = parse_date(value)[1]
            kept.append((name, value))
        elif name == "_type":
            types = [t.strip() for t in value.split(",") if t.strip()]
            for t in types:
                if t not in known:
                    raise bad_request(f"Unknown resource type {t!r} in _type")
            kept.append((name, value))
        elif name == "_mdm":
            kept.append((name, value))  # the caller resolved it into ``linked``; pages keep it
        elif name in TRANSPORT_PARAMS:
            continue
        else:
            raise bad_request(f"Unsupported $everything parameter {name!r}")
    owners = [patient_id, *(i for i in linked if i != patient_id)]
    member_parts = [compartments.members("Patient", owner) for owner in owners]
    patient_parts = [
        select(
            literal("Patient", String()).label("resource_type"),
            literal(owner, String()).label("resource_id"),
        )
        for owner in owners
    ]
    sources = union(*patient_parts, *member_parts).subquery()
    ref = index_reference.c
    referenced = select(ref.target_type, ref.target_id).where(
        tuple_(ref.resource_type, ref.resource_id).in_(
            select(sources.c.resource_type, sources.c.resource_id)
        ),
        ref.target_type.in_(EVERYTHING_REFERENCED),
    )
    keys = union(*patient_parts, *member_parts, referenced).subquery()
    conditions: list[ColumnElement[bool]] = [
        rc.c.deleted.is_(False),
        tuple_(rc.c.resource_type, rc.c.resource_id).in_(select(keys.c[0], keys.c[1])),
        *restrict(Owner(rc, None), visibility),
    ]
    if since is not None:
        conditions.append(rc.c.last_updated >= since)
    if types is not None:
        conditions.append(rc.c.resource_type.in_(types))
    if care_from is not None or care_to is not None:
        conditions.append(_cared_for_between(care_from, care_to))
    total = conn.execute(select(func.count()).select_from(rc).where(*conditions)).scalar_one()
    rows: list[Any] = []
    if count:
        first = case(
            (and_(rc.c.resource_type == "Patient", rc.c.resource_id == patient_id), 0), else_=1
        )
        rows = list(
            conn.execute(
                select(rc.c.resource_type, rc.c.resource_id, rc.c.content, *checked_columns())
                .select_from(joined_with_log())
                .where(*conditions)
                .order_by(first, rc.c.resource_type, rc.c.resource_id)
                .limit(count)
                .offset(_served_offset(offset))
            )
        )
        rows = _served(conn, rows)
    entries = [
        bundle.entry(
            base_url, r.resource_type, r.resource_id, opened(conn, r.content) or b"{}", bundle.MATCH
        )
        for r in rows
    ]
    path = f"{base_url}/Patient/{patient_id}/$everything"
    links = _links(path, kept, count, offset, total, offset + count < total, False)
    _, now_text = _now()
    return bundle.searchset(total=total, links=links, entries=entries, last_updated=now_text)


def _cared_for_between(start: int | None, end: int | None) -> ColumnElement[bool]:
    """``$everything``'s ``start``/``end``: a resource with a care date (see
    :data:`CARE_DATE_PARAMS`) is kept when one of them overlaps the range; a resource with
    none (the Patient, a Practitioner, an undated Condition) is not tied to a date of care and
    is kept too."""
    care = index_date.alias("care_date")
    dated = select(care.c.resource_id).where(
        care.c.resource_type == rc.c.resource_type,
        care.c.resource_id == rc.c.resource_id,
        care.c.param.in_(CARE_DATE_PARAMS),
    )
    overlapping = dated
    if start is not None:
        overlapping = overlapping.where(care.c.high >= start)
    if end is not None:
        overlapping = overlapping.where(care.c.low <= end)
    return or_(~dated.exists(), overlapping.exists())


__all__ = ["everything", "search"]
