"""``fhirhub knowledge load``: a source's edges written as FHIR resources, with a Provenance.

Each edge becomes one resource with a stable id (``kn-<source>-<digest of its key>``), written
with ``update`` (create-or-replace), so loading a source again updates what it loaded before
instead of duplicating it. One Provenance per load names the source, its version and licence.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from typing import Any

from fhirhub.plugins.knowledge.fhir_codec import resource_for
from fhirhub.plugins.knowledge.sources import BUILTIN, KnowledgeSource
from fhirhub.sdk import Hub, format_instant, invalid, transaction

#: Edges per transaction: short enough that other writers are not kept waiting long.
BATCH = 200


def source_named(name: str) -> KnowledgeSource:
    """A built-in source by name, or ``package.module:attribute`` (a class or an instance)."""
    if name in BUILTIN:
        return BUILTIN[name]
    module_name, _, attribute = name.partition(":")
    if not attribute:
        raise invalid(f"Unknown knowledge source {name!r}; built in: {', '.join(BUILTIN)}")
    found = getattr(importlib.import_module(module_name), attribute)
    source = found() if isinstance(found, type) else found
    if not hasattr(source, "info") or not hasattr(source, "edges"):
        raise invalid(f"{name} has no info and edges(): not a knowledge source")
    return source  # type: ignore[no-any-return]


def load_source(
    hub: Hub, source: KnowledgeSource, progress: Callable[[int], None] | None = None
) -> int:
    """Write every edge of ``source`` (as the current caller); returns how many."""
    prefix = "kn-" + "".join(c for c in source.info.name.lower() if c.isalnum())[:20]
    references: list[dict[str, str]] = []
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        with transaction(hub) as tx:
            for resource in pending:
                result = tx.update(resource)
                references.append({"reference": result.version.reference})
        pending.clear()
        if progress is not None:
            progress(len(references))

    for key, edge in source.edges():
        resource = resource_for(edge)
        resource["id"] = f"{prefix}-{hashlib.sha1(key.encode()).hexdigest()[:24]}"
        pending.append(resource)
        if len(pending) >= BATCH:
            flush()
    if pending:
        flush()
    if references:
        with transaction(hub) as tx:
            tx.create(provenance(source, references))
    return len(references)


def provenance(source: KnowledgeSource, targets: list[dict[str, str]]) -> dict[str, Any]:
    import time

    info = source.info
    return {
        "resourceType": "Provenance",
        "target": targets,
        "recorded": format_instant(int(time.time() * 1_000_000)),
        "policy": [info.licence_url],
        "activity": {"text": f"fhirhub knowledge load {info.name}"},
        "agent": [{"who": {"display": "fhirhub knowledge loader"}}],
        "entity": [
            {
                "role": "source",
                "what": {
                    "display": f"{info.label}; licence {info.licence}"
                    + (f"; {info.url}" if info.url else "")
                    + (f"; {info.note}" if info.note else "")
                },
            }
        ],
    }
