"""What every mapping function needs: ids, identifier systems, references and ``meta``.

Ids are derived from the OSCAR instance and the row's key (``o1a2b3c4d-pt-42``), so a record
maps to the same resource every time (an update-by-id is idempotent and a re-run writes no new
version), two OSCARs never collide, and a resource can be referenced before it is read.
Identifiers carry the OSCAR keys as well, for searches (``identifier=<system>|42``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

_SAFE_KEY = re.compile(r"^[A-Za-z0-9.-]{1,40}$")

#: The tag on every resource the adapter writes: loop prevention for the write-back.
OSCAR_TAG_SYSTEM = "urn:fhirhub:oscar"


@dataclass
class MappingContext:
    """Per-instance settings of a mapping run (immutable while it runs)."""

    instance: str
    source_uri: str
    id_prefix: str
    zone: ZoneInfo
    #: OSCAR key -> FHIR id overrides: records that fhirhub created and wrote back to OSCAR
    #: keep their original resource (``("appointment", "123") -> "abc"``).
    links: dict[tuple[str, str], str] = field(default_factory=dict)

    def system(self, name: str) -> str:
        """The identifier system of an OSCAR key space (``demographic``, ``chart-no``...)."""
        return f"{self.source_uri}/{name}"

    def resource_id(self, kind: str, key: str | int) -> str:
        text = str(key)
        if not _SAFE_KEY.match(text):
            text = hashlib.sha256(text.encode()).hexdigest()[:24]
        return f"{self.id_prefix}-{kind}-{text}"

    def linked_id(self, table: str, key: str, kind: str) -> str:
        return self.links.get((table, key)) or self.resource_id(kind, key)

    def patient_id(self, demographic_no: int | str) -> str:
        return self.linked_id("demographic", str(demographic_no), "pt")

    def patient_ref(self, demographic_no: int | str) -> dict[str, Any]:
        return {"reference": f"Patient/{self.patient_id(demographic_no)}"}

    def practitioner_id(self, provider_no: str) -> str:
        return self.resource_id("pr", provider_no)

    def practitioner_ref(
        self, provider_no: str | None, known: Container[str] | None
    ) -> dict[str, Any] | None:
        """A reference to the provider's Practitioner when it was synced; else a logical
        reference (identifier and display) so that a provider number OSCAR keeps for a
        provider it no longer has (or a system user) loses nothing and breaks no reference."""
        number = str(provider_no or "").strip()
        if not number:
            return None
        if known is None or number in known:
            return {"reference": f"Practitioner/{self.practitioner_id(number)}"}
        return {
            "identifier": {"system": self.system("provider"), "value": number},
            "display": f"OSCAR provider {number}",
        }

    def meta(self) -> dict[str, Any]:
        return {
            "source": self.source_uri,
            "tag": [{"system": OSCAR_TAG_SYSTEM, "code": "synced", "display": "Synced from OSCAR"}],
        }

    def identifier(self, name: str, value: str | int) -> dict[str, Any]:
        return {"system": self.system(name), "value": str(value)}
