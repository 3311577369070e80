"""``_summary`` and ``_elements``: returning a subset of each resource's elements.

http://hl7.org/fhir/R4/search.html#summary and #elements. This is the only place on the read path
that parses stored JSON: a resource is only re-serialised when the client asked for a subset.
Every subsetted resource keeps ``resourceType``, ``id`` and ``meta`` and gets the ``SUBSETTED``
tag in ``meta.tag`` (http://hl7.org/fhir/R4/search.html#elements: "the server SHOULD mark the
resources with the tag SUBSETTED").

The summary element names per resource type come from ``definitions/summary-elements.json``
(derived from the R4 StructureDefinitions' ``isSummary`` and ``min`` by
``tools/derive_summary_elements.py``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from fhirhub.fhir_store.errors import FhirError

SUMMARY_FILE = Path(__file__).resolve().parent.parent / "definitions" / "summary-elements.json"

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
}

#: Elements every subset keeps.
ALWAYS = ("resourceType", "id", "meta")

SUMMARY_MODES = ("true", "false", "text", "data", "count")


@functools.cache
def _summary_table() -> dict[str, dict[str, list[str]]]:
    table: dict[str, dict[str, list[str]]] = json.loads(SUMMARY_FILE.read_bytes())
    return table


def _matcher(names: Iterable[str]) -> Callable[[str], bool]:
    """A predicate on JSON keys for element names (``value[x]`` matches ``valueQuantity``; a
    primitive's ``_name`` extension sibling goes with ``name``)."""
    exact: set[str] = set()
    choices: list[str] = []
    for name in names:
        if name.endswith("[x]"):
            choices.append(name[:-3])
        else:
            exact.add(name)

    def keep(key: str) -> bool:
        if key.startswith("_"):
            key = key[1:]
        if key in exact:
            return True
        for base in choices:
            if key.startswith(base) and len(key) > len(base) and key[len(base)].isupper():
                return True
        return False

    return keep


@functools.cache
def _summary_keeper(resource_type: str, mode: str) -> Callable[[str], bool]:
    entry = _summary_table().get(resource_type, {"summary": [], "mandatory": []})
    if mode == "true":
        names = [*ALWAYS, *entry["summary"]]
    else:  # text
        names = [*ALWAYS, "text", *entry["mandatory"]]
    return _matcher(names)


def _tag_subsetted(resource: dict[str, Any]) -> None:
    meta = resource.get("meta")
    meta = dict(meta) if isinstance(meta, dict) else {}
    tags = [t for t in meta.get("tag") or () if not _is_subsetted(t)]
    tags.append(dict(SUBSETTED))
    meta["tag"] = tags
    resource["meta"] = meta


def _is_subsetted(tag: Any) -> bool:
    return (
        isinstance(tag, dict)
        and tag.get("code") == SUBSETTED["code"]
        and tag.get("system") == SUBSETTED["system"]
    )


class Subsetter:
    """Applies one request's ``_summary``/``_elements`` to stored resource bytes."""

    def __init__(self, summary: str | None, elements: list[str] | None) -> None:
        if summary is not None and summary not in SUMMARY_MODES:
            raise FhirError(400, f"Unknown _summary value {summary!r}", code="invalid")
        if summary is not None and elements is not None and summary != "false":
            raise FhirError(400, "_summary and _elements cannot be used together", code="invalid")
        self.summary = None if summary == "false" else summary
        self.elements = elements

    @property
    def active(self) -> bool:
        return self.elements is not None or self.summary in ("true", "text", "data")

    def apply(self, resource_type: str, content: bytes) -> bytes:
        """The stored resource, reduced as requested (unchanged bytes when nothing applies)."""
        if not self.active:
            return content
        resource: dict[str, Any] = orjson.loads(content)
        if self.summary == "data":
            resource.pop("text", None)
            resource.pop("_text", None)
        else:
            if self.elements is not None:
                keep = _elements_keeper(tuple(self.elements))
            else:
                keep = _summary_keeper(resource_type, self.summary or "true")
            resource = {k: v for k, v in resource.items() if keep(k)}
        _tag_subsetted(resource)
        return orjson.dumps(resource)


@functools.cache
def _elements_keeper(elements: tuple[str, ...]) -> Callable[[str], bool]:
    # ``Patient.name`` is allowed too (the spec's examples use bare names, some clients qualify)
    names = [e.split(".", 1)[1] if "." in e else e for e in elements]
    return _matcher([*ALWAYS, *names])


def parse_elements(values: list[str]) -> list[str] | None:
    """The element names of every ``_elements`` parameter (comma separated), or None."""
    if not values:
        return None
    out: list[str] = []
    for value in values:
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return out
