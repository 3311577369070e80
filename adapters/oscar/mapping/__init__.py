"""The one OSCAR -> FHIR R4 mapper: :class:`Mapper` turns an OSCAR record (whichever source
read it) into the FHIR resources that represent it. docs/oscar.md has the field-by-field table.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fhirhub.adapters.oscar.dates import MappingError
from fhirhub.adapters.oscar.mapping import clinical, notes, observations, people, scheduling
from fhirhub.adapters.oscar.mapping.context import OSCAR_TAG_SYSTEM, MappingContext
from fhirhub.adapters.oscar.model import (
    Allergy,
    Appointment,
    Demographic,
    Drug,
    Measurement,
    Note,
    OscarRecord,
    Provider,
)

__all__ = ["OSCAR_TAG_SYSTEM", "Mapped", "Mapper", "MappingContext", "MappingError"]


@dataclass
class Mapped:
    """The resources of one record, in write order, and what the mapping had to warn about."""

    record: OscarRecord
    resources: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)

    @property
    def patient_id(self) -> str | None:
        """The Patient the resources need (a missing one makes the record a dead letter)."""
        for resource in self.resources:
            for key in ("subject", "patient"):
                ref = (
                    resource.get(key, {}).get("reference", "")
                    if isinstance(resource.get(key), dict)
                    else ""
                )
                if ref.startswith("Patient/"):
                    return str(ref[len("Patient/") :])
            for participant in resource.get("participant", []):
                ref = participant.get("actor", {}).get("reference", "")
                if ref.startswith("Patient/"):
                    return str(ref[len("Patient/") :])
        return None


class Mapper:
    """Maps records with one :class:`MappingContext`. ``known_providers`` (provider numbers
    synced as Practitioners) decides between a literal and a logical practitioner reference;
    None trusts every number."""

    def __init__(
        self,
        ctx: MappingContext,
        known_providers: Container[str] | None = None,
        today: date | None = None,
    ) -> None:
        self.ctx = ctx
        self.known_providers = known_providers
        self.today = today or date.today()

    def map(self, record: OscarRecord) -> Mapped:
        """The resources of ``record``; raises :class:`MappingError` when it cannot be mapped
        without inventing or losing data."""
        warnings: list[str] = []
        known = self.known_providers
        ctx = self.ctx
        resources: list[dict[str, Any]]
        if isinstance(record, Demographic):
            resources = [people.patient(record, ctx, known)]
        elif isinstance(record, Provider):
            resources = people.practitioner(record, ctx)
        elif isinstance(record, Allergy):
            resources = [clinical.allergy(record, ctx, known)]
        elif isinstance(record, Drug):
            resources = [clinical.medication_request(record, ctx, known, self.today)]
        elif isinstance(record, Measurement):
            resources = [observations.observation(record, ctx, known, warnings)]
        elif isinstance(record, Appointment):
            resources = scheduling.appointment(record, ctx, known)
        elif isinstance(record, Note):
            resources = notes.document_reference(record, ctx, known)
        else:
            raise MappingError(f"no mapping for {type(record).__name__}")
        return Mapped(record, resources, warnings)
