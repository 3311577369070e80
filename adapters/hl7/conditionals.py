"""Resolve a message Bundle's conditional entries by business identifier before its transaction.

Every converted message carries conditional entries keyed by one identifier
(``PUT Patient?identifier=system|value``, ``POST Location`` + ``ifNoneExist: identifier=...``).
The transaction code resolves each through the general search (parse, build the query, run it,
serialise a searchset Bundle, parse it back): about 1 ms an entry, 8-10 entries a message,
most of an HL7 message's cost. Here all of a message's such entries are looked up with one
query on the token index, which finds the rows ``identifier=system|value`` searches
(http://hl7.org/fhir/R4/search.html#token: system and code both equal), and the entry is
rewritten into its resolved plain form:

* ``PUT Type?identifier=s|v`` -> ``PUT Type/<matched id>``, or, when none matches, a plain
  ``POST Type`` (a create with a server-assigned id, which is what a conditional update matching
  nothing does, http://hl7.org/fhir/R4/http.html#cond-update, without a pointless read);
* ``POST`` + ``ifNoneExist`` matching one resource -> the entry is dropped and references to
  its ``fullUrl`` point at the match (conditional create: nothing is written); matching none
  -> a plain ``POST``.

This runs for the system only (MLLP, the CLI): for an HTTP caller, whose tenant and scopes
limit what a conditional may match, and for anything else (several matches, other criteria,
a type without an ``identifier`` token parameter) the entry is left to the transaction,
which answers it exactly as the REST API does (412 for several matches). The lookup runs on the caller's connection, inside the write transaction,
so it sees every message committed or flushed before it, including earlier messages of the
same group commit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from sqlalchemy import Connection

from fhirhub.core.access import current_access
from fhirhub.core.interactions.search import parse_query
from fhirhub.fhir_store.driver import fetch_all
from fhirhub.fhir_store.errors import FhirError
from fhirhub.fhir_store.schema import resource_current
from fhirhub.fhir_store.search.index_tables import index_token
from fhirhub.fhir_store.search.predicates import split_unescaped, unescape

if TYPE_CHECKING:
    from fhirhub.core.hub import Hub

#: Live resources carrying given identifiers, one ``(type, code, system)`` triple per
#: ``OR`` term (each an index lookup on ``ix_token_lookup``): one statement per message, its
#: text cached per number of terms (a message has a handful of shapes), run through
#: :mod:`fhirhub.fhir_store.driver`.
_LOOKUPS: dict[int, str] = {}


def _lookup_statement(terms: int) -> str:
    statement = _LOOKUPS.get(terms)
    if statement is None:
        token, current = index_token.name, resource_current.name
        where = " OR ".join(
            f"(t.resource_type = :t{i} AND t.code = :c{i} AND t.system = :s{i})"
            for i in range(terms)
        )
        statement = _LOOKUPS[terms] = (
            f"SELECT t.resource_type, t.system, t.code, t.resource_id FROM {token} t "
            f"JOIN {current} c ON c.resource_type = t.resource_type "
            f"AND c.resource_id = t.resource_id "
            f"WHERE t.param = 'identifier' AND c.deleted = :deleted AND ({where})"
        )
    return statement


def _plain_identifier(query: str) -> tuple[str, str] | None:
    """The fast path of :func:`identifier_criteria`: one ``identifier`` parameter whose
    decoded value has exactly one ``|`` and no search escapes (what the converters build),
    read without the general query parser; None when the general parser must decide."""
    if not query.startswith("identifier=") or any(c in query for c in "&;+?"):
        return None
    decoded = unquote(query[11:])
    if "\\" in decoded or decoded.count("|") != 1:
        return None
    system, _, value = decoded.partition("|")
    return (system, value) if system and value else None


def identifier_criteria(query: str) -> tuple[str, str] | None:
    """``identifier=system|value`` (URL-encoded, search escapes) -> (system, value); None for
    any other criteria."""
    plain = _plain_identifier(query)
    if plain is not None:
        return plain
    try:
        params = parse_query(query)
    except FhirError:
        return None
    if len(params) != 1 or params[0][0] != "identifier":
        return None
    parts = split_unescaped(params[0][1], "|")
    if len(parts) != 2:
        return None
    system, value = unescape(parts[0]), unescape(parts[1])
    if not system or not value:
        return None
    return system, value


def _criteria(hub: Hub, resource_type: str, query: str) -> tuple[str, str, str] | None:
    """``(type, system, value)`` when the fast path can answer this criteria, else None."""
    criteria = identifier_criteria(query)
    if criteria is None:
        return None
    definition = hub.store.registry.get(resource_type, "identifier")
    if definition is None or definition.type != "token":
        return None
    return resource_type, criteria[0], criteria[1]


def lookup_identifiers(
    conn: Connection, keys: list[tuple[str, str, str]]
) -> dict[tuple[str, str, str], list[str]]:
    """``(type, system, value)`` -> ids of the live resources of that type carrying the
    identifier (sorted), with one query for all ``keys``."""
    found: dict[tuple[str, str, str], set[str]] = {key: set() for key in keys}
    unique = list(found)
    if not unique:
        return {}
    params: dict[str, Any] = {"deleted": False}
    for i, (rtype, system, value) in enumerate(unique):
        params[f"t{i}"], params[f"s{i}"], params[f"c{i}"] = rtype, system, value
    for rtype, system, code, resource_id in fetch_all(conn, _lookup_statement(len(unique)), params):
        ids = found.get((rtype, system, code))
        if ids is not None:
            ids.add(resource_id)
    return {key: sorted(ids) for key, ids in found.items()}


def resolve_conditionals(hub: Hub, conn: Connection, bundle: dict[str, Any]) -> dict[str, str]:
    """Rewrite, in place, the identifier-conditional entries of transaction ``bundle`` into
    their resolved form (see the module docstring). Returns ``fullUrl -> Type/id`` for the
    conditional creates that matched and were dropped: references to them are rewritten by
    the transaction (``process_transaction_in(..., resolved=...)``), in the one walk over
    the resources it makes anyway."""
    if not current_access().is_system:  # a caller's tenant and scopes limit what may match:
        return {}  # the transaction's conditional matching applies them
    entries: list[dict[str, Any]] = bundle.get("entry", [])
    wanted: dict[int, tuple[str, str, str]] = {}
    for index, entry in enumerate(entries):
        request = entry.get("request") or {}
        method, url = request.get("method"), request.get("url", "")
        key = None
        if method == "PUT" and "?" in url and isinstance(entry.get("resource"), dict):
            rtype, _, query = url.partition("?")
            key = _criteria(hub, rtype, query)
        elif method == "POST" and request.get("ifNoneExist") and "?" not in url:
            key = _criteria(hub, url.strip("/"), request["ifNoneExist"])
        if key is not None:
            wanted[index] = key
    if not wanted:
        return {}
    matches = lookup_identifiers(conn, list(wanted.values()))
    kept: list[dict[str, Any]] = []
    redirect: dict[str, str] = {}
    for index, entry in enumerate(entries):
        key = wanted.get(index)
        found = matches[key] if key is not None else None
        if key is None or found is None or len(found) > 1:  # left to the transaction
            kept.append(entry)
            continue
        rtype = key[0]
        request, resource = entry["request"], entry.get("resource")
        if request["method"] == "PUT":
            assert isinstance(resource, dict)
            if found or resource.get("id"):
                target = found[0] if found else resource["id"]
                entry["request"] = {**request, "url": f"{rtype}/{target}"}
                entry["resource"] = {**resource, "id": target}
            else:  # no match and no id: a create with a server-assigned id (no read needed)
                entry["request"] = {"method": "POST", "url": rtype}
        elif found:  # conditional create matched: nothing to write
            if entry.get("fullUrl"):
                redirect[entry["fullUrl"]] = f"{rtype}/{found[0]}"
            continue
        else:
            entry["request"] = {k: v for k, v in request.items() if k != "ifNoneExist"}
        kept.append(entry)
    bundle["entry"] = kept
    return redirect
