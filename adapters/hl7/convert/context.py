"""The state one message conversion carries between segment maps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhirhub.adapters.hl7.convert.builder import BundleBuilder
from fhirhub.adapters.hl7.convert.datatypes import uri_for
from fhirhub.adapters.hl7.parsing import Message


class ConversionError(ValueError):
    """The message is readable but its content cannot be mapped (AE with an ERR segment)."""

    def __init__(
        self,
        message: str,
        *,
        segment: str,
        field: int | None = None,
        sequence: int = 1,
        code: str = "101",
    ) -> None:
        super().__init__(message)
        self.segment = segment
        self.field = field
        self.sequence = sequence
        self.code = code


@dataclass
class Conversion:
    message: Message
    builder: BundleBuilder
    patient: str | None = None
    encounter: str | None = None
    #: Every resource reference written, for the Provenance's target list.
    targets: list[str] = field(default_factory=list)
    #: Whether the message owns patient demographics (ADT): then Patient is upserted.
    owns_patient: bool = False
    #: ``system|value`` of the patient's matching identifier, URL-quoted (scopes NK1 ids).
    patient_key: str = ""

    @property
    def sender_system(self) -> str:
        """Default identifier system for identifiers without an assigning authority: the
        sending facility (else application) is implicitly the assigner."""
        msh = self.message.msh
        name = msh.get(4, 2) or msh.get(4) or msh.get(3, 2) or msh.get(3) or "unknown"
        return uri_for(name)

    def add(self, resource: dict[str, Any], **kwargs: Any) -> str:
        reference = self.builder.add(resource, **kwargs)
        if reference not in self.targets:
            self.targets.append(reference)
        return reference

    def ref(self, full_url: str | None, display: str | None = None) -> dict[str, Any] | None:
        if full_url is None:
            return None
        out: dict[str, Any] = {"reference": full_url}
        if display:
            out["display"] = display
        return out
