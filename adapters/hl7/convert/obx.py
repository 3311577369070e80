"""OBX -> Observation (IG "OBX[Observation]"): code OBX-3, value by OBX-2 data type, units
OBX-6, reference range OBX-7, interpretation OBX-8 (table 0078), status OBX-11 (table 0085),
effective time OBX-14, performer OBX-16, comments in the NTE segments that follow (``note``).

Identity: a result is the same result in every message that reports it, so a final,
corrected (OBX-11 ``C``) or deleted (``D``) result updates the Observation a preliminary one
created (conditional update; the store keeps every version as history). The identifier is
the filler order number (OBR-3, the lab's own number for the order) with OBX-3 (the code)
and OBX-4 (the sub-id that tells apart several results with one code), scoped to the patient
so that a mis-sent order number can never move a result to another patient. Outside an order
(ADT, VXU) the message itself scopes it.

Embedded documents (OBX-2 ``ED``: a PDF, a CDA; ``RP``: a pointer to one) are not
Observations: the data is stored as a Binary, described by a DocumentReference, and listed in
the DiagnosticReport's ``presentedForm``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import quote

from fhirhub.adapters.hl7.convert.context import Conversion
from fhirhub.adapters.hl7.convert.datatypes import codeable, decimal
from fhirhub.adapters.hl7.convert.participants import practitioner
from fhirhub.adapters.hl7.convert.tables import OBSERVATION_STATUS, code_system_url
from fhirhub.adapters.hl7.convert.units import UCUM, is_ucum
from fhirhub.adapters.hl7.parsing import Segment

#: OBX-6.3 names under which a unit code claims to be UCUM (or its predecessors' codes).
UCUM_NAMES = frozenset({"", "UCUM", "ANSI+", "ISO+", "HL70396"})
#: SN comparators FHIR Quantity.comparator can hold; ``=`` means none.
COMPARATORS = frozenset({"<", "<=", ">", ">="})
#: The IG's originalText extension: the value as sent, beside its structured form.
ORIGINAL_TEXT = "http://hl7.org/fhir/StructureDefinition/originalText"
#: ED-2 type of data (table 0191) -> MIME top-level type.
MEDIA_TYPES = {
    "AP": "application",
    "APPLICATION": "application",
    "IM": "image",
    "IMAGE": "image",
    "TEXT": "text",
    "TX": "text",
    "AU": "audio",
    "AUDIO": "audio",
    "VIDEO": "video",
    "MULTIPART": "multipart",
}


def unit(ctx: Conversion, segment: Segment, number: int) -> dict[str, Any]:
    """A CWE unit (OBX-6, RXA-7, RXE-5) as Quantity ``unit``/``system``/``code``: the UCUM
    system only for a valid UCUM code; a code of another named system keeps that system;
    anything else keeps the unit text only, with a warning."""
    code, text, system_name = (segment.get(number, c) for c in (1, 2, 3))
    if not code:
        return {"unit": text} if text else {}
    if system_name.upper() not in UCUM_NAMES:
        return {"unit": text or code, "system": code_system_url(system_name), "code": code}
    if is_ucum(code):
        return {"unit": text or code, "system": UCUM, "code": code}
    ctx.warn(
        segment,
        number,
        f"{code!r} is not a valid UCUM code; kept as unit text without a code system",
        component=1,
    )
    return {"unit": text or code}


def _quantity(value: float | int, units: dict[str, Any]) -> dict[str, Any]:
    return {"value": value, **units}


def _reference_range(obx: Segment, units: dict[str, Any]) -> list[dict[str, Any]]:
    text = obx.get(7)
    if not text:
        return []
    low, sep, high = text.partition("-")
    low_value, high_value = decimal(low), decimal(high)
    if sep and low_value is not None and high_value is not None:
        return [
            {
                "low": _quantity(low_value, units),
                "high": _quantity(high_value, units),
                "text": text,
            }
        ]
    return [{"text": text}]


def _structured_numeric(
    ctx: Conversion, obx: Segment, units: dict[str, Any]
) -> tuple[str, Any] | None:
    """SN (comparator ^ num1 ^ separator/suffix ^ num2) per the IG's SN maps: ``-`` a range
    (inclusive), ``:`` and ``/`` a ratio, a comparator alone a Quantity with ``comparator``;
    ``+`` after num1 (``2+``) is an ordinal, kept as text. Anything else is kept as text with
    a warning, never reduced to its first number."""
    comparator, first, separator, second = (obx.get(5, c) for c in (1, 2, 3, 4))
    sent = "".join((comparator, first, separator, second))
    low, high = decimal(first), decimal(second)
    comparator = comparator if comparator != "=" else ""
    if separator == "" and not second and low is not None and comparator in COMPARATORS | {""}:
        quantity = _quantity(low, units)
        if comparator:
            quantity["comparator"] = comparator
        return "valueQuantity", quantity
    if not comparator and low is not None and high is not None:
        original = {"extension": [{"url": ORIGINAL_TEXT, "valueString": sent}]}
        if separator == "-":
            return "valueRange", {
                **original,
                "low": _quantity(low, units),
                "high": _quantity(high, units),
            }
        if separator in (":", "/"):
            return "valueRatio", {
                **original,
                "numerator": {"value": low},
                "denominator": {"value": high},
            }
    if separator == "+" and not second and low is not None and not comparator:
        return "valueString", sent
    if sent:
        ctx.warn(
            obx,
            5,
            f"structured numeric {sent!r} has no FHIR numeric form; stored as text",
        )
        return "valueString", sent
    return None


def _value(ctx: Conversion, obx: Segment, units: dict[str, Any]) -> tuple[str, Any] | None:
    kind = obx.get(2).upper()
    reps = obx.repetitions(5)
    if not reps:
        return None
    raw = obx.get(5)
    if kind == "SN":
        return _structured_numeric(ctx, obx, units)
    if kind == "NM":
        value = decimal(raw)
        if value is not None and len(reps) == 1:
            return "valueQuantity", _quantity(value, units)
        problem = (
            "repeats; FHIR has one value per Observation"
            if value is not None
            else "is not a number"
        )
        ctx.warn(obx, 5, f"numeric value {obx.raw(5)!r} {problem}; stored as text")
        return "valueString", ", ".join(obx.get(5, 1, repetition=i) for i in range(len(reps)))
    if kind in ("CE", "CWE", "CNE", "CF"):
        value_cc = codeable(obx, 5)
        return ("valueCodeableConcept", value_cc) if value_cc else None
    if kind in ("DT", "DTM", "TS"):
        when = ctx.date(obx, 5) if len(raw) >= 4 else None
        if when is None:
            ctx.warn(obx, 5, f"{raw!r} is not a valid {kind}; stored as text")
            return "valueString", raw
        return "valueDateTime", when
    if kind in ("TM", "HD", "EI", "ID", "IS"):
        return "valueString", obx.get(5, 1) if kind in ("HD", "EI") else raw
    text = "\n".join(
        obx.get(5, 1, repetition=i)
        if len(obx.components(5, i)) == 1
        else " ".join(x for x in (obx.get(5, j, repetition=i) for j in range(1, 6)) if x)
        for i in range(len(reps))
    )
    return ("valueString", text) if text else None


def _status(ctx: Conversion, obx: Segment) -> str:
    """OBX-11 (table 0085) by the IG's map; ``unknown`` when missing or not in the table."""
    sent = obx.get(11).upper()
    status = OBSERVATION_STATUS.get(sent)
    if status is None:
        if sent:
            ctx.warn(
                obx,
                11,
                f"result status {sent!r} is not in table 0085; stored as unknown",
                code="103",
            )
        else:
            ctx.warn(obx, 11, "result status is empty (required); stored as unknown", code="101")
        return "unknown"
    return status


def observation(ctx: Conversion, obx: Segment, identifier: dict[str, Any]) -> dict[str, Any] | None:
    """The Observation for one OBX, or None when the row carries nothing (no code, no value).

    A row without a code (OBX-3 empty) but with a value is kept, its code saying so, and
    warned about: dropping it would lose a line of a report."""
    code = codeable(obx, 3)
    if code is None:
        if not obx.get(5):
            return None
        ctx.warn(
            obx,
            3,
            "observation identifier is empty (required); stored with its value, code unknown",
            code="101",
        )
        code = {"text": "unidentified observation (OBX-3 empty)"}
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [identifier],
        "status": _status(ctx, obx),
        "code": code,
    }
    if ctx.patient:
        resource["subject"] = {"reference": ctx.patient}
    if ctx.encounter:
        resource["encounter"] = {"reference": ctx.encounter}
    units = unit(ctx, obx, 6) if obx.get(6) else {}
    value = _value(ctx, obx, units)
    if value:
        resource[value[0]] = value[1]
    ranges = _reference_range(obx, units)
    if ranges:
        resource["referenceRange"] = ranges
    interpretations = [
        c for c in (codeable(obx, 8, i, table="0078") for i in range(len(obx.repetitions(8)))) if c
    ]
    if interpretations:
        resource["interpretation"] = interpretations
    effective = ctx.date(obx, 14)
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
    notes = ctx.notes(obx)
    if notes:
        resource["note"] = notes
    return resource


def result_identifier(
    ctx: Conversion, obx: Segment, scope: str, seen: dict[str, int] | None = None
) -> dict[str, Any]:
    """The Observation's identity: ``scope`` (the filler order, or the message) + OBX-3 +
    OBX-4; a second row with the same three in one order gets its occurrence appended (the
    lines of a text report often share one code)."""
    code = obx.get(3, 1) or obx.get(3, 2)
    value = f"{scope}^{obx.get(3, 3)}^{code}^{obx.get(4)}"
    if seen is not None:
        seen[value] = count = seen.get(value, 0) + 1
        if count > 1:
            value = f"{value}^{count}"
    return {"system": f"urn:fhirhub:hl7v2:obx:{ctx.patient_key}", "value": value}


def order_scope(filler: dict[str, Any]) -> str:
    """An order identifier as the scope part of a result identity."""
    return f"{filler['value']}@{filler.get('system', '')}"


def convert_obx(
    ctx: Conversion,
    obx: Segment,
    identifier: dict[str, Any] | str,
    attachments: list[dict[str, Any]] | None = None,
) -> str | None:
    """Add the Observation (or, for ED/RP, the document) of ``obx``; return its reference.

    ``identifier``: from :func:`result_identifier`, or a plain key scoped to this message.
    ``attachments``: where a document's Attachment goes (the DiagnosticReport's
    ``presentedForm``)."""
    if isinstance(identifier, str):
        identifier = {
            "system": f"urn:fhirhub:hl7v2:obx:{ctx.patient_key}",
            "value": f"{ctx.message.control_id}^{identifier}",
        }
    if obx.get(2).upper() in ("ED", "RP"):
        return embedded_document(ctx, obx, identifier, attachments)
    resource = observation(ctx, obx, identifier)
    if resource is None:
        return None
    return ctx.add(resource, identifier=identifier, upsert=True)


def _media_type(kind: str, subtype: str) -> str:
    kind, subtype = kind.strip().upper(), subtype.strip().lower()
    if "/" in subtype:
        return subtype
    if subtype == "pdf":
        return "application/pdf"
    if subtype in ("cda", "hl7-cda", "x-hl7-cda-level-one"):
        return "application/hl7-cda+xml"
    top = MEDIA_TYPES.get(kind)
    if top and subtype:
        return f"{top}/{subtype}"
    return "text/plain" if top == "text" else "application/octet-stream"


def _embedded_data(ctx: Conversion, obx: Segment) -> bytes | None:
    """ED-5 decoded by ED-4 (table 0299: ``Base64``, ``Hex``, ``A`` plain text)."""
    encoding = obx.get(5, 4).upper()
    data = obx.get(5, 5)
    if not data:
        return None
    try:
        if encoding == "BASE64":
            return base64.b64decode("".join(data.split()), validate=True)
        if encoding == "HEX":
            return bytes.fromhex("".join(data.split()))
    except (binascii.Error, ValueError):
        ctx.warn(obx, 5, f"ED data is not valid {encoding}; document not stored", component=5)
        return None
    return data.encode("utf-8")


def embedded_document(
    ctx: Conversion,
    obx: Segment,
    identifier: dict[str, Any],
    attachments: list[dict[str, Any]] | None,
) -> str | None:
    """OBX ED/RP -> Binary (the bytes, ``securityContext`` the patient) + DocumentReference
    (IG "OBX[DocumentReference]"), and its Attachment in ``attachments``."""
    kind = obx.get(2).upper()
    title = obx.get(3, 2) or obx.get(3, 1) or "document"
    attachment: dict[str, Any] = {"title": title}
    if kind == "RP":  # reference pointer: RP.1 where, RP.3/RP.4 what
        pointer = obx.get(5, 1)
        if not pointer:
            return None
        attachment["url"] = pointer
        attachment["contentType"] = _media_type(obx.get(5, 3), obx.get(5, 4))
    else:
        data = _embedded_data(ctx, obx)
        if data is None:
            return None
        binary_id = f"{ctx.key}-obx{obx.sequence}"[:64]
        attachment["contentType"] = _media_type(obx.get(5, 2), obx.get(5, 3))
        binary: dict[str, Any] = {
            "resourceType": "Binary",
            "contentType": attachment["contentType"],
            "data": base64.b64encode(data).decode("ascii"),
        }
        if ctx.patient:
            binary["securityContext"] = {"reference": ctx.patient}
        ctx.add(binary, url=f"Binary/{quote(binary_id, safe='')}")
        binary["id"] = binary_id
        attachment["url"] = f"Binary/{binary_id}"
        attachment["size"] = len(data)
    document: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "identifier": [identifier],
        "status": "entered-in-error" if obx.get(11).upper() in ("D", "W") else "current",
        "content": [{"attachment": attachment}],
    }
    code = codeable(obx, 3)
    if code:
        document["type"] = code
    if ctx.patient:
        document["subject"] = {"reference": ctx.patient}
    when = ctx.date(obx, 14, precision="instant")
    if when:
        document["date"] = when
    if attachments is not None:
        attachments.append(attachment)
    return ctx.add(document, identifier=identifier, upsert=True)
