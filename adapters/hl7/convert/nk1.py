"""NK1 -> RelatedPerson (IG "NK1[RelatedPerson]").

Identity: the person's own identifier (NK1-33) when sent, else their name and relationship
(NK1-2, NK1-3). Never the NK1's position: a later message listing the family in another
order (or with one person fewer) must not overwrite the mother with the spouse.
"""

from __future__ import annotations

from typing import Any

from fhirhub.adapters.hl7.convert.context import Conversion
from fhirhub.adapters.hl7.convert.datatypes import (
    addresses,
    codeable,
    human_names,
    identifiers,
    telecoms,
)
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
    own = identifiers(nk1, 33)
    for found in own:
        found.setdefault("system", ctx.sender_system)
    if own:
        key = f"{own[0]['system']}|{own[0]['value']}"
    else:
        name = names[0]
        key = "^".join(
            [
                name.get("family", ""),
                " ".join(name.get("given", [])),
                nk1.get(3, 1) or nk1.get(3, 2),
            ]
        )
    identifier = {"system": f"urn:fhirhub:hl7v2:nk1:{ctx.patient_key}", "value": key}
    person["identifier"] = [identifier, *own]
    return ctx.add(person, identifier=identifier, upsert=ctx.owns_patient)
