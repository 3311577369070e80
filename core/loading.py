"""Bulk loading for ``fhirhub load``: Bundles and NDJSON, through the same write path as REST.

Transaction and batch Bundles are processed as the REST API would; NDJSON files and
collection Bundles are written in chunks of :data:`CHUNK` resources per unit of work
(resources with an id are updated or created with that id, others get a new id).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from fhirhub.core.interactions import write as writes
from fhirhub.core.interactions.bundle import process_bundle
from fhirhub.core.interactions.checks import require_id
from fhirhub.core.interactions.references import check_references
from fhirhub.fhir_store.errors import FhirError, invalid
from fhirhub.fhir_store.validation import validate_many

if TYPE_CHECKING:
    from fhirhub.core.hub import Hub

CHUNK = 500


def _ndjson(path: Path) -> Iterator[Any]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    yield orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise invalid(f"{path}:{number}: malformed JSON: {exc}") from exc


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def put_resources(hub: Hub, resources: Sequence[Any]) -> int:
    """Write resources in one unit of work (all or nothing)."""
    errors = validate_many(resources)
    for index, error in enumerate(errors):
        if error is not None:
            raise FhirError(error.status, f"resource {index}: {error.message}", code="invalid")
    writes.check_models(hub, list(resources))
    with hub.store.unit_of_work() as uow:
        written: list[tuple[str, dict[str, Any]]] = []
        for resource in resources:
            rtype = resource["resourceType"]
            rid = resource.get("id") or writes.new_id()
            require_id(rid)
            previous = uow.current(rtype, rid)
            writes.store_resource(
                hub,
                uow,
                "update",
                rtype,
                rid,
                resource,
                previous=previous,
                method="PUT",
                check_refs=False,
            )
            written.append((rtype, resource))
        check_references(uow, written, hub.base_url)
    return len(resources)


def load_document(hub: Hub, document: Any) -> int:
    if not isinstance(document, dict):
        raise invalid("Expected a JSON object (a Bundle or a resource)")
    if document.get("resourceType") == "Bundle" and document.get("type") in (
        "transaction",
        "batch",
    ):
        process_bundle(hub, document, base_url=hub.base_url, return_pref="minimal")
        return len(document.get("entry", []))
    if document.get("resourceType") == "Bundle" and document.get("type") in (
        "collection",
        "searchset",
    ):
        resources = [e["resource"] for e in document.get("entry", []) if "resource" in e]
        return put_resources(hub, resources)
    return put_resources(hub, [document])


def load_files(hub: Hub, files: Sequence[Path], *, progress: bool = False) -> int:
    from tqdm import tqdm

    total = 0
    bar = tqdm(total=len(files), unit="file", disable=not progress)
    for path in files:
        if path.suffix in (".ndjson", ".jsonl"):
            for chunk in _chunks(_ndjson(path), CHUNK):
                total += put_resources(hub, chunk)
        else:
            try:
                document = orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError as exc:
                raise invalid(f"{path}: malformed JSON: {exc}") from exc
            total += load_document(hub, document)
        bar.update(1)
        bar.set_postfix(resources=total)
    bar.close()
    return total
