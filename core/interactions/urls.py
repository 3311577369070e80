"""The FHIR RESTful URL grammar (http://hl7.org/fhir/R4/http.html), in one place.

Three parts of the hub read FHIR URLs: the REST router (which handler serves a request), the
batch/transaction processor (what a ``Bundle.entry.request`` asks for) and the access layer
(which interaction to record in the audit trail). They all use :data:`ROUTES` and
:func:`parse`, so a URL means the same thing wherever it arrives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

#: The REST API's routes: path template (below the FHIR base) -> method -> interaction.
#: ``{type}``, ``{id}``, ``{vid}`` and ``{compartment}`` are path segments; ``${name}`` is an
#: operation. The REST router is built from this table (``core/http/rest.py``).
ROUTES: tuple[tuple[str, dict[str, str]], ...] = (
    ("", {"GET": "search-system", "POST": "transaction"}),
    ("/metadata", {"GET": "capabilities"}),
    ("/_search", {"POST": "search-system"}),
    ("/_history", {"GET": "history-system"}),
    ("/${name}", {"GET": "operation", "POST": "operation"}),
    (
        "/{type}",
        {"GET": "search-type", "POST": "create", "PUT": "update", "DELETE": "delete"},
    ),
    ("/{type}/_search", {"POST": "search-type"}),
    ("/{type}/_history", {"GET": "history-type"}),
    ("/{type}/${name}", {"GET": "operation", "POST": "operation"}),
    ("/{type}/{id}", {"GET": "read", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}),
    ("/{type}/{id}/_history", {"GET": "history-instance"}),
    ("/{type}/{id}/_history/{vid}", {"GET": "vread"}),
    ("/{type}/{id}/${name}", {"GET": "operation", "POST": "operation"}),
    ("/{type}/{id}/{compartment}", {"GET": "search-compartment"}),
)

_SEGMENT = {
    "{type}": r"(?P<type>[A-Z][A-Za-z]+)",
    "{id}": r"(?P<id>[^/$][^/]*)",  # "_history", "_search": earlier routes match first
    "{vid}": r"(?P<vid>[^/]+)",
    "{compartment}": r"(?P<compartment>[A-Z][A-Za-z]+|\*)",
    "${name}": r"\$(?P<name>[^/]+)",
}


def _compile(template: str) -> re.Pattern[str]:
    pattern = re.escape(template)
    for placeholder, regex in _SEGMENT.items():
        pattern = pattern.replace(re.escape(placeholder), regex)
    return re.compile(f"^{pattern}/?$")


_COMPILED = tuple((_compile(template), methods) for template, methods in ROUTES)


@dataclass(frozen=True)
class FhirRequest:
    """What a FHIR URL asks for. ``query`` is the raw query string (None when the URL has
    no ``?``); ``interaction`` is None for a path outside the grammar."""

    interaction: str | None
    resource_type: str | None = None
    resource_id: str | None = None
    version_id: str | None = None
    operation: str | None = None
    compartment_type: str | None = None
    query: str | None = None

    @property
    def conditional(self) -> bool:
        """A type-level write with criteria (``PUT Patient?identifier=...``)."""
        return self.query is not None and self.resource_id is None


def local_path(url: str, base_url: str = "") -> str:
    """``url`` below the FHIR base: an absolute URL on ``base_url`` loses the base; a path
    starting with ``/fhir`` loses that prefix; a relative URL (a Bundle entry) stays."""
    if base_url and url.startswith(base_url.rstrip("/") + "/"):
        return url[len(base_url.rstrip("/")) :]
    if url.startswith(("http://", "https://")):
        parts = urlsplit(url)
        path = parts.path
        if path.startswith("/fhir"):
            path = path[len("/fhir") :]
        return path + (f"?{parts.query}" if parts.query or url.endswith("?") else "")
    if url == "/fhir" or url.startswith(("/fhir/", "/fhir?")):
        return url[len("/fhir") :]
    return url if url.startswith("/") or not url else "/" + url


def parse(method: str, url: str, base_url: str = "") -> FhirRequest:
    """The interaction ``method url`` is, with the type, id, version, operation and query it
    names (http://hl7.org/fhir/R4/http.html). ``url`` is below the FHIR base, absolute on
    ``base_url``, or a path starting with ``/fhir``."""
    path = local_path(url, base_url)
    path, question, query = path.partition("?")
    for pattern, methods in _COMPILED:
        match = pattern.match(path)
        if match is None:
            continue
        groups = match.groupdict()
        return FhirRequest(
            methods.get(method.upper(), methods.get("GET")),
            groups.get("type"),
            groups.get("id"),
            groups.get("vid"),
            groups.get("name"),
            groups.get("compartment"),
            query if question else None,
        )
    return FhirRequest(None, query=query if question else None)
