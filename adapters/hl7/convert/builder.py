"""Assemble one FHIR transaction Bundle per message, idempotently.

Every resource that carries a business identifier is written conditionally
(http://hl7.org/fhir/R4/http.html#cond-update): ``PUT Type?identifier=system|value`` where the
message is the source of truth for it (ADT demographics), ``POST`` with ``ifNoneExist``
where it only refers to it (a lab result naming its patient must not overwrite demographics).
The same resource named twice in one message (an ordering provider that is also the
attending) becomes one entry, because two conditional creates in one transaction would not
see each other. Full URLs are ``urn:uuid`` values derived from the message identity, so
converting the same bytes twice gives the same Bundle.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fhirhub.adapters.hl7.parsing import Message

_NAMESPACE = uuid.UUID("5b0f4c1e-6a55-4cf1-9f1e-3d0f2d4c7a11")

#: A Bundle.entry extension (valueString: element names, comma-separated) asking that those
#: elements keep their stored values when the conditional update matches an existing
#: resource: the message says nothing about them (an ADT^A08 carries no encounter status).
#: Read and removed before the transaction (:mod:`fhirhub.adapters.hl7.keep_stored`).
KEEP_STORED = "urn:fhirhub:hl7v2:keep-stored"


#: Characters ``quote(..., safe=":/|.\\")`` leaves alone: most identifiers are made of these
#: only, and skipping ``quote`` for them saves most of its cost.
_NEEDS_NO_QUOTING = re.compile(r"[A-Za-z0-9_.\-~:/|\\]*")


def identifier_query(identifier: dict[str, Any]) -> str:
    """``identifier=system|value`` with the search-escaping rules (search.html#escaping)."""
    value = str(identifier["value"]).replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,")
    system = identifier.get("system")
    token = f"{system}|{value}" if system else value
    if _NEEDS_NO_QUOTING.fullmatch(token):
        return "identifier=" + token
    return "identifier=" + quote(token, safe=":/|.\\")


def _uuid5_text(seed: str) -> str:
    """``str(uuid.uuid5(_NAMESPACE, seed))`` without building two UUID objects (RFC 4122
    section 4.3: SHA-1 of namespace and name, version and variant bits set)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE.bytes + seed.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass
class BundleBuilder:
    message: Message
    entries: list[dict[str, Any]] = field(default_factory=list)
    _by_key: dict[tuple[str, str], str] = field(default_factory=dict)
    _counter: int = 0
    _prefix: str = ""

    def full_url(self, key: str) -> str:
        if not self._prefix:
            self._prefix = f"{self.message.sender}|{self.message.control_id}|"
        return f"urn:uuid:{_uuid5_text(self._prefix + key)}"

    def add(
        self,
        resource: dict[str, Any],
        *,
        identifier: dict[str, Any] | None = None,
        upsert: bool = False,
        url: str | None = None,
        keep: tuple[str, ...] = (),
    ) -> str:
        """Add ``resource``; return the reference other entries use for it.

        ``identifier``: the business identifier to match on (conditional create, or
        conditional update with ``upsert``). ``url``: an explicit ``PUT Type/id``.
        ``keep``: elements whose stored values an update keeps (see :data:`KEEP_STORED`).
        """
        rtype = resource["resourceType"]
        query = identifier_query(identifier) if identifier is not None else ""
        if identifier is not None:
            if (rtype, query) in self._by_key:
                return self._by_key[(rtype, query)]
        self._counter += 1
        full_url = self.full_url(f"{rtype}-{self._counter}")
        if url is not None:
            request: dict[str, Any] = {"method": "PUT", "url": url}
        elif identifier is not None and upsert:
            request = {"method": "PUT", "url": f"{rtype}?{query}"}
        elif identifier is not None:
            request = {
                "method": "POST",
                "url": rtype,
                "ifNoneExist": query,
            }
        else:
            request = {"method": "POST", "url": rtype}
        entry: dict[str, Any] = {"fullUrl": full_url, "resource": resource, "request": request}
        if keep:
            entry["extension"] = [{"url": KEEP_STORED, "valueString": ",".join(keep)}]
        self.entries.append(entry)
        if identifier is not None:
            self._by_key[(rtype, query)] = full_url
        return full_url

    def bundle(self) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "transaction", "entry": self.entries}
