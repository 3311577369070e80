"""Elements an update keeps from the stored resource because the message says nothing about
them (``KEEP_STORED`` entry extensions set by the converter, e.g. the status of an encounter
that an ADT^A08 updates).

A conditional update replaces the whole resource (http://hl7.org/fhir/R4/http.html#update);
an HL7 event that is not a status change still carries the rest of the visit. So, inside the
message's own transaction (which sees earlier messages of the same group), the entry's match
is looked up and the listed elements are copied from its current version into the resource
before the Bundle is written. The extensions are always removed: they are instructions to
this adapter, not data.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhirhub.adapters.hl7.convert.builder import KEEP_STORED
from fhirhub.sdk import Transaction


def apply_keep_stored(tx: Transaction, bundle: dict[str, Any]) -> None:
    for entry in bundle.get("entry", []):
        extensions = entry.get("extension")
        if not extensions:
            continue
        names = [e["valueString"] for e in extensions if e.get("url") == KEEP_STORED]
        rest = [e for e in extensions if e.get("url") != KEEP_STORED]
        if rest:
            entry["extension"] = rest
        else:
            del entry["extension"]
        request, resource = entry.get("request") or {}, entry.get("resource")
        url = request.get("url", "")
        if not names or request.get("method") != "PUT" or "?" not in url or resource is None:
            continue
        resource_type, _, criteria = url.partition("?")
        found = tx.match(resource_type, criteria)
        if len(found) != 1:  # none: a create; several: the transaction answers 412
            continue
        stored = tx.current(resource_type, found[0])
        if stored is None or stored.content is None:
            continue
        content = orjson.loads(stored.content)
        for name in ",".join(names).split(","):
            if name in content:
                resource[name] = content[name]
