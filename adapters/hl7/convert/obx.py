"""OBX -> Observation (IG "OBX[Observation]"): code OBX-3, value by OBX-2 data type, units
OBX-6, reference range OBX-7, interpretation OBX-8 (table 0078), status OBX-11 (table 0085),
effective time OBX-14, performer OBX-16."""

from __future__ import annotations

from typing import Any

from fhirhub.adapters.hl7.convert.context import Conversion
from fhirhub.adapters.hl7.convert.datatypes import codeable, decimal, dtm
from fhirhub.adapters.hl7.convert.participants import practitioner
from fhirhub.adapters.hl7.convert.tables import OBSERVATION_STATUS, code_system_url
from fhirhub.adapters.hl7.parsing import Segment

UCUM = "http://unitsofmeasure.org"


def _quantity(obx: Segment, value: float | int) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": value}
    unit_code = obx.get(6, 1)
    unit_text = obx.get(6, 2) or unit_code
    if unit_code:
        quantity["unit"] = unit_text
        system_name = obx.get(6, 3)
        quantity["system"] = code_system_url(system_name) if system_name else UCUM
        quantity["code"] = unit_code
    return quantity


def _reference_range(obx: Segment) -> list[dict[str, Any]]:
    text = obx.get(7)
    if not text:
        return []
    low, sep, high = text.partition("-")
    low_value, high_value = decimal(low), decimal(high)
    if sep and low_value is not None and high_value is not None:
        unit = obx.get(6, 1)

        def bound(v: float | int) -> dict[str, Any]:
            out: dict[str, Any] = {"value": v}
            if unit:
                out.update(unit=obx.get(6, 2) or unit, system=UCUM, code=unit)
            return out

        return [{"low": bound(low_value), "high": bound(high_value), "text": text}]
    return [{"text": text}]


def _value(obx: Segment) -> tuple[str, Any] | None:
    kind = obx.get(2).upper()
    reps = obx.repetitions(5)
    if not reps:
        return None
    raw = obx.get(5)
    if kind in ("NM", "SN"):
        if kind == "SN":
            comparator, number = obx.get(5, 1), obx.get(5, 2)
            value = decimal(number)
            if value is not None:
                quantity = _quantity(obx, value)
                if comparator in ("<", "<=", ">", ">="):
                    quantity["comparator"] = comparator
                return "valueQuantity", quantity
            return "valueString", "".join(obx.get(5, i) for i in (1, 2, 3, 4))
        value = decimal(raw)
        if value is not None and len(reps) == 1:
            return "valueQuantity", _quantity(obx, value)
        return "valueString", ", ".join(obx.get(5, 1, repetition=i) for i in range(len(reps)))
    if kind in ("CE", "CWE", "CNE", "CF"):
        value_cc = codeable(obx, 5)
        return ("valueCodeableConcept", value_cc) if value_cc else None
    if kind in ("DT", "DTM", "TS"):
        when = dtm(raw)
        return ("valueDateTime", when) if when else ("valueString", raw)
    if kind in ("TM", "HD", "EI", "ID", "IS"):
        return "valueString", obx.get(5, 1) if kind in ("HD", "EI") else raw
    if kind in ("ED", "RP"):
        return None  # embedded/referenced data: carried by DocumentReference in MDM, not here
    text = "\n".join("^".join(c for c in obx.components(5, i) if c) for i in range(len(reps)))
    text = (
        "\n".join(
            obx.get(5, 1, repetition=i)
            if len(obx.components(5, i)) == 1
            else " ".join(x for x in (obx.get(5, j, repetition=i) for j in range(1, 6)) if x)
            for i in range(len(reps))
        )
        or text
    )
    return ("valueString", text) if text else None


def observation(ctx: Conversion, obx: Segment, key: str) -> dict[str, Any] | None:
    """The Observation for one OBX, or None when OBX-3 (the code) is empty."""
    code = codeable(obx, 3)
    if code is None:
        return None
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": OBSERVATION_STATUS.get(obx.get(11).upper(), "final"),
        "code": code,
        "identifier": [{"system": f"urn:fhirhub:hl7v2:obx:{ctx.patient_key}", "value": key}],
    }
    if ctx.patient:
        resource["subject"] = {"reference": ctx.patient}
    if ctx.encounter:
        resource["encounter"] = {"reference": ctx.encounter}
    value = _value(obx)
    if value:
        resource[value[0]] = value[1]
    elif obx.get(2).upper() not in ("ED", "RP") and obx.get(5):
        resource["valueString"] = obx.get(5)
    ranges = _reference_range(obx)
    if ranges:
        resource["referenceRange"] = ranges
    interpretations = [
        c for c in (codeable(obx, 8, i, table="0078") for i in range(len(obx.repetitions(8)))) if c
    ]
    if interpretations:
        resource["interpretation"] = interpretations
    effective = dtm(obx.get(14))
    if effective:
        resource["effectiveDateTime"] = effective
    performers = [
        p
        for p in (practitioner(ctx, obx, 16, i) for i in range(len(obx.repetitions(16))))
        if p and "reference" in p
    ]
    if performers:
        resource["performer"] = performers
    method = codeable(obx, 17)
    if method:
        resource["method"] = method
    return resource


def convert_obx(ctx: Conversion, obx: Segment, key: str) -> str | None:
    resource = observation(ctx, obx, key)
    if resource is None:
        return None
    return ctx.add(resource, identifier=resource["identifier"][0])
