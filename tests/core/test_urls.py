"""The FHIR URL grammar, read in one place by the REST router, Bundle entries and the audit."""

from __future__ import annotations

import pytest

from fhirhub.core.http.access_control import classify
from fhirhub.core.interactions.bundle import parse_entry_url
from fhirhub.core.interactions.urls import parse

CASES = [
    ("GET", "", "search-system", None, None, None, None),
    ("POST", "", "transaction", None, None, None, None),
    ("GET", "metadata", "capabilities", None, None, None, None),
    ("POST", "_search", "search-system", None, None, None, None),
    ("GET", "_history", "history-system", None, None, None, None),
    ("POST", "$export", "operation", None, None, None, "export"),
    ("GET", "Patient", "search-type", "Patient", None, None, None),
    ("POST", "Patient", "create", "Patient", None, None, None),
    ("PUT", "Patient?identifier=a|b", "update", "Patient", None, None, None),
    ("DELETE", "Patient?identifier=a|b", "delete", "Patient", None, None, None),
    ("POST", "Patient/_search", "search-type", "Patient", None, None, None),
    ("GET", "Patient/_history", "history-type", "Patient", None, None, None),
    ("GET", "Patient/$match", "operation", "Patient", None, None, "match"),
    ("GET", "Patient/p-1", "read", "Patient", "p-1", None, None),
    ("PUT", "Patient/p-1", "update", "Patient", "p-1", None, None),
    ("PATCH", "Patient/p-1", "patch", "Patient", "p-1", None, None),
    ("DELETE", "Patient/p-1", "delete", "Patient", "p-1", None, None),
    ("GET", "Patient/p-1/_history", "history-instance", "Patient", "p-1", None, None),
    ("GET", "Patient/p-1/_history/3", "vread", "Patient", "p-1", "3", None),
    ("GET", "Patient/p-1/$everything", "operation", "Patient", "p-1", None, "everything"),
    ("GET", "Patient/p-1/Observation", "search-compartment", "Patient", "p-1", None, None),
    ("GET", "Patient/p-1/*", "search-compartment", "Patient", "p-1", None, None),
]

#: What each REST handler does, for checking the router against the grammar.
HANDLER_INTERACTIONS = {
    "system_search": {"search-system"},
    "system_bundle": {"transaction"},
    "metadata": {"capabilities"},
    "system_search_post": {"search-system"},
    "system_history": {"history-system"},
    "system_operation": {"operation"},
    "type_operation": {"operation"},
    "instance_operation": {"operation"},
    "type_search": {"search-type"},
    "type_search_post": {"search-type"},
    "create": {"create"},
    "conditional_update": {"update"},
    "conditional_delete": {"delete"},
    "type_history": {"history-type"},
    "read": {"read"},
    "update": {"update"},
    "patch": {"patch"},
    "delete": {"delete"},
    "instance_history": {"history-instance"},
    "vread": {"vread"},
    "compartment_search": {"search-compartment"},
}


@pytest.mark.parametrize(("method", "url", "interaction", "rtype", "rid", "vid", "op"), CASES)
def test_every_form_of_the_grammar(
    method: str,
    url: str,
    interaction: str,
    rtype: str | None,
    rid: str | None,
    vid: str | None,
    op: str | None,
) -> None:
    for written in (url, f"/fhir/{url}".rstrip("/"), f"https://hub.example/fhir/{url}"):
        request = parse(method, written, "https://hub.example/fhir")
        assert (request.interaction, request.resource_type, request.resource_id) == (
            interaction,
            rtype,
            rid,
        ), written
        assert (request.version_id, request.operation) == (vid, op)
    # The Bundle processor and the audit trail read the same grammar.
    assert parse_entry_url(url, "", method) == parse(method, url)
    path = f"/fhir/{url.partition('?')[0]}".rstrip("/")
    assert classify(method, path)["interaction"] == interaction
    # The REST router picks the handler of that interaction, with the same type and id.
    handler, params = route_of(method, path)
    assert interaction in HANDLER_INTERACTIONS[handler], (handler, interaction)
    assert params.get("resource_type") == rtype and params.get("resource_id") == rid


def route_of(method: str, path: str) -> tuple[str, dict[str, str]]:
    """The handler Starlette's routing gives ``method path`` in the hub's app (the first full
    match, as a request would get), with its path parameters."""
    from starlette.routing import Match

    from fhirhub.core.http import rest

    scope = {"type": "http", "method": method, "path": path.removeprefix("/fhir") or "/"}
    for route in rest.router.routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return route.endpoint.__name__, child["path_params"]  # type: ignore[attr-defined]
    raise AssertionError(f"no route for {method} {path}")


def test_the_rest_router_is_built_from_the_grammar() -> None:
    """Every route of the grammar, each method, and nothing else."""
    from fhirhub.core.http import rest
    from fhirhub.core.interactions.urls import ROUTES

    served = {
        (route.path, method)  # type: ignore[attr-defined]
        for route in rest.router.routes
        for method in route.methods  # type: ignore[attr-defined]
    }
    expected = {
        (path, method)
        for template, methods in ROUTES
        for path in (["", "/"] if template == "" else [rest._router_path(template)])
        for method in methods
    }
    assert served == expected


def test_conditional_writes_carry_their_criteria() -> None:
    request = parse("PUT", "Patient?identifier=urn:mrn|7")
    assert request.conditional and request.query == "identifier=urn:mrn|7"
    assert not parse("PUT", "Patient/7").conditional
    assert parse("GET", "Patient?").query == ""


def test_paths_outside_the_grammar() -> None:
    assert parse("GET", "patient/1").interaction is None  # types start upper-case
    assert classify("GET", "/plugins/hl7/v2")["interaction"] == "http"
