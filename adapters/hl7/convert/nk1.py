"""NK1 -> RelatedPerson (IG "NK1[RelatedPerson]")."""

from __future__ import annotations

from typing import Any

from fhirhub.adapters.hl7.convert.context import Conversion
from fhirhub.adapters.hl7.convert.datatypes import addresses, codeable, human_names, telecoms
from fhirhub.adapters.hl7.parsing import Segment


def convert_nk1(ctx: Conversion, nk1: Segment, index: int) -> str | None:
    names = human_names(nk1, 2)
    if not names or ctx.patient is None:
        return None
    person: dict[str, Any] = {
        "resourceType": "RelatedPerson",
        "patient": {"reference": ctx.patient},
        "name": names,
    }
    relationship = codeable(nk1, 3, table="0063")
    if relationship:
        person["relationship"] = [relationship]
    address = addresses(nk1, 4)
    if address:
        person["address"] = address
    telecom = telecoms(nk1, 5, "home") + telecoms(nk1, 6, "work")
    if telecom:
        person["telecom"] = telecom
    identifier = {"system": f"urn:fhirhub:hl7v2:nk1:{ctx.patient_key}", "value": str(index)}
    person["identifier"] = [identifier]
    return ctx.add(person, identifier=identifier, upsert=ctx.owns_patient)
