"""``measurements`` (+ ``measurementsExt``, ``measurementType``) -> Observation.

Known types get LOINC and UCUM (the vital-signs profile's codes, R4 §8.2.1); blood pressure,
which OSCAR keeps as one text value ``130/85``, becomes the 85354-9 panel with systolic and
diastolic components. A type without a known code keeps OSCAR's code as a local coding with
its display name. A value that is not a number is kept as ``valueString`` and reported as a
warning, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Container
from typing import Any

from fhirhub.adapters.oscar import codes
from fhirhub.adapters.oscar.dates import MappingError, fhir_datetime, fhir_instant
from fhirhub.adapters.oscar.mapping.context import MappingContext
from fhirhub.adapters.oscar.mapping.values import fhir_decimal, number, text
from fhirhub.adapters.oscar.model import DeletedMeasurement, Measurement

_BP = re.compile(r"^\s*(\d{2,3}(?:\.\d+)?)\s*/\s*(\d{2,3}(?:\.\d+)?)\s*$")
_LOINC = re.compile(r"^\d{1,7}-\d$")
_ABNORMAL = {"H": "H", "HH": "HH", "L": "L", "LL": "LL", "A": "A", "N": "N"}
LOCAL_TYPE_SYSTEM = "urn:fhirhub:oscar:measurement-type"


def _category(vital: bool) -> list[dict[str, Any]]:
    code = "vital-signs" if vital else "laboratory"
    return [
        {
            "coding": [
                {
                    "system": codes.OBSERVATION_CATEGORY,
                    "code": code,
                    "display": "Vital Signs" if vital else "Laboratory",
                }
            ]
        }
    ]


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": fhir_decimal(value), "unit": unit, "system": codes.UCUM, "code": unit}


def observation(
    record: Measurement,
    ctx: MappingContext,
    known_providers: Container[str] | None,
    warnings: list[str],
) -> dict[str, Any]:
    if not record.demographicNo:
        raise MappingError(f"measurement {record.id} has no demographicNo")
    kind = (record.type or "").strip()
    if not kind:
        raise MappingError(f"measurement {record.id} has no type")
    raw_value = text(record.dataField)
    if raw_value is None:
        raise MappingError(f"measurement {record.id} ({kind}) has no value")
    when = fhir_datetime(record.dateObserved, ctx.zone, field="dateObserved") or fhir_datetime(
        record.dateEntered, ctx.zone, field="dateEntered"
    )
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": ctx.linked_id("measurements", record.key, "ms"),
        "meta": ctx.meta(),
        "identifier": [ctx.identifier("measurements", record.id)],
        "status": "final",
        "subject": ctx.patient_ref(record.demographicNo),
    }
    ext_loinc = next(
        (
            text(record.ext.get(k))
            for k in ("identifier", "loinc", "LOINC")
            if text(record.ext.get(k))
        ),
        None,
    )
    known = codes.MEASUREMENT_CODES.get(kind.upper())
    display = record.type_display or kind
    if kind.upper() == "BP":
        _blood_pressure(resource, raw_value, record, warnings)
    else:
        local = {"system": LOCAL_TYPE_SYSTEM, "code": kind, "display": display}
        coding: list[dict[str, Any]] = []
        if known:
            coding.append({"system": codes.LOINC, "code": known.loinc, "display": known.display})
        elif ext_loinc and _LOINC.match(ext_loinc):
            coding.append(
                {
                    "system": codes.LOINC,
                    "code": ext_loinc,
                    **(
                        {"display": text(record.ext.get("name"))}
                        if text(record.ext.get("name"))
                        else {}
                    ),
                }
            )
        coding.append(local)
        resource["category"] = _category(bool(known and known.vital))
        resource["code"] = {"coding": coding, "text": display}
        value = number(raw_value)
        unit = (known.unit if known else None) or text(record.ext.get("unit"))
        if value is not None and kind.upper() == "A1C" and value < 1:
            unit = "1"  # OSCAR's A1C instruction asks for a fraction (0.040-0.200)
        if value is not None and unit:
            resource["valueQuantity"] = _quantity(value, unit)
        elif value is not None:
            resource["valueQuantity"] = {"value": fhir_decimal(value)}
        else:
            resource["valueString"] = raw_value
            warnings.append(
                f"measurement {record.id} ({kind}): non-numeric value {raw_value!r} kept as text"
            )
    if when:
        resource["effectiveDateTime"] = when
    else:
        raise MappingError(f"measurement {record.id} has neither dateObserved nor dateEntered")
    issued = fhir_instant(record.dateEntered, ctx.zone, field="dateEntered")
    if issued:
        resource["issued"] = issued
    performer = ctx.practitioner_ref(record.providerNo, known_providers)
    if performer:
        resource["performer"] = [performer]
    notes = [t for t in (text(record.comments), text(record.measuringInstruction)) if t]
    if notes:
        resource["note"] = [{"text": t} for t in notes]
    flag_value = (text(record.ext.get("abnormal")) or "").upper()
    if flag_value in _ABNORMAL:
        resource["interpretation"] = [
            {"coding": [{"system": codes.INTERPRETATION, "code": _ABNORMAL[flag_value]}]}
        ]
    if text(record.ext.get("range")):
        resource["referenceRange"] = [{"text": text(record.ext.get("range"))}]
    if record.appointmentNo:
        resource["encounter"] = {
            "reference": f"Encounter/{ctx.resource_id('enc', record.appointmentNo)}"
        }
    return resource


def _blood_pressure(
    resource: dict[str, Any], raw_value: str, record: Measurement, warnings: list[str]
) -> None:
    panel = codes.BP_PANEL
    resource["category"] = _category(True)
    resource["code"] = {
        "coding": [
            {"system": codes.LOINC, "code": panel.loinc, "display": panel.display},
            {
                "system": LOCAL_TYPE_SYSTEM,
                "code": record.type,
                "display": record.type_display or "Blood Pressure",
            },
        ],
        "text": "Blood pressure",
    }
    found = _BP.match(raw_value)
    if not found:
        resource["valueString"] = raw_value
        warnings.append(
            f"measurement {record.id} (BP): {raw_value!r} is not systolic/diastolic; kept as text"
        )
        return
    resource["component"] = [
        {
            "code": {"coding": [{"system": codes.LOINC, "code": code, "display": display}]},
            "valueQuantity": _quantity(float(value), panel.unit),
        }
        for (code, display), value in zip(codes.BP_COMPONENTS, found.groups(), strict=True)
    ]


def withdrawn(
    current: dict[str, Any], record: DeletedMeasurement, ctx: MappingContext
) -> dict[str, Any]:
    """The stored Observation of a measurement OSCAR deleted, now ``entered-in-error``
    (R4 §8.1 Observation.status: "the observation was withdrawn")."""
    resource = {k: v for k, v in current.items() if k != "meta"}
    resource["meta"] = ctx.meta()
    resource["status"] = "entered-in-error"
    deleted = fhir_datetime(record.dateDeleted, ctx.zone, field="dateDeleted")
    resource["note"] = [
        *resource.get("note", []),
        {"text": f"Deleted in OSCAR{' on ' + deleted if deleted else ''}"},
    ]
    return resource
