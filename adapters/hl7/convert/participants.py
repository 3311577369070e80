"""XCN -> Practitioner, XON/HD -> Organization, PL -> Location (IG segment-independent maps).

Each is created once per business identifier (``ifNoneExist``) and shared by reference.
A person without an id number (XCN.1) is not created: only its name is kept as the
reference's display, because nothing would make a second message find the same person.
"""

from __future__ import annotations

from typing import Any

from fhirhub.adapters.hl7.convert.context import Conversion
from fhirhub.adapters.hl7.convert.datatypes import hd_system, location_name, person_name, uri_for
from fhirhub.adapters.hl7.parsing import Segment


def _display(name: dict[str, Any] | None) -> str | None:
    if not name:
        return None
    return " ".join([*name.get("given", []), name.get("family", "")]).strip() or None


def practitioner(
    ctx: Conversion, segment: Segment, number: int, rep: int = 0
) -> dict[str, Any] | None:
    """XCN (id .1, name .2-.6, assigning authority .9) -> Practitioner reference."""
    value = segment.get(number, 1, repetition=rep)
    name = person_name(segment, number, rep=rep)
    if not value:
        display = _display(name)
        return {"display": display} if display else None
    identifier = {"system": hd_system(segment, number, 9, rep) or ctx.sender_system, "value": value}
    resource: dict[str, Any] = {"resourceType": "Practitioner", "identifier": [identifier]}
    if name:
        resource["name"] = [name]
    return ctx.ref(ctx.add(resource, identifier=identifier), _display(name))


def organization(
    ctx: Conversion, name: str, identifier_value: str = "", system: str | None = None
) -> dict[str, Any] | None:
    if not name and not identifier_value:
        return None
    identifier = {"system": system or ctx.sender_system, "value": identifier_value or name}
    resource: dict[str, Any] = {"resourceType": "Organization", "identifier": [identifier]}
    if name:
        resource["name"] = name
    return ctx.ref(ctx.add(resource, identifier=identifier), name or None)


def organization_xon(
    ctx: Conversion, segment: Segment, number: int, rep: int = 0
) -> dict[str, Any] | None:
    """XON (name .1, id .10 or .3, assigning authority .6) -> Organization reference."""
    name = segment.get(number, 1, repetition=rep)
    ident = segment.get(number, 10, repetition=rep) or segment.get(number, 3, repetition=rep)
    return organization(ctx, name, ident, hd_system(segment, number, 6, rep))


def sending_organization(ctx: Conversion) -> dict[str, Any]:
    """MSH-4 (else MSH-3): the organization that sent the message, the Provenance agent."""
    msh = ctx.message.msh
    name = msh.get(4) or msh.get(3) or "unknown sender"
    universal = msh.get(4, 2)
    identifier = {
        "system": uri_for(universal) if universal else "urn:fhirhub:hl7v2:facility",
        "value": name,
    }
    resource = {"resourceType": "Organization", "identifier": [identifier], "name": name}
    ref = ctx.ref(ctx.add(resource, identifier=identifier), name)
    assert ref is not None
    return ref


def location(ctx: Conversion, segment: Segment, number: int, rep: int = 0) -> dict[str, Any] | None:
    """PL -> Location (point of care / room / bed; facility PL.4 as the identifier scope)."""
    name = location_name(segment, number, rep)
    if not name:
        return None
    facility = segment.get(number, 4, 2, rep) or segment.get(number, 4, 1, rep)
    system = uri_for(facility) if facility else ctx.sender_system
    identifier = {"system": system, "value": name}
    resource: dict[str, Any] = {
        "resourceType": "Location",
        "identifier": [identifier],
        "name": name,
        "mode": "instance",
    }
    bed = segment.get(number, 3, repetition=rep)
    room = segment.get(number, 2, repetition=rep)
    kind = "bd" if bed else "ro" if room else "wa"
    resource["physicalType"] = {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/location-physical-type", "code": kind}
        ]
    }
    return ctx.ref(ctx.add(resource, identifier=identifier), name)
