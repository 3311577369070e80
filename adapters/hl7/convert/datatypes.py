"""HL7 v2 data types to FHIR data types (HL7 v2-to-FHIR IG, "Data Type Maps").

CX -> Identifier, XPN -> HumanName, XAD -> Address, XTN -> ContactPoint, CWE/CE/CNE ->
CodeableConcept, DTM/TS -> date/dateTime/instant, PL -> location names, NM+CWE -> Quantity.
Every function takes a :class:`Segment` and a field number so repetitions and escapes are
handled in one place; empty input gives ``None`` (FHIR forbids empty elements).
"""

from __future__ import annotations

import calendar
import re
from typing import Any
from urllib.parse import quote

from fhirhub.adapters.hl7.convert.tables import code_system_url, concept, display
from fhirhub.adapters.hl7.parsing import Segment

_DTM = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,6})?\s*([+-]\d{4})?$")
_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
#: Assigning authority names and coding system names are free text on the wire; as URIs they
#: live under this prefix unless they are an OID/UUID/URL (IG: "Identifier System" guidance).
LOCAL_URI = "urn:fhirhub:hl7v2"


def _clean(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v not in (None, "", [], {})}


#: Years a DTM may carry here: the FHIR date grammar allows 0001-9999, but a year outside
#: this range on an HL7 feed is a misread value (``800101`` sent as YYMMDD reads as year
#: 8001 under the DTM grammar YYYY[MM[DD..]]), not a date to store.
PLAUSIBLE_YEARS = range(1000, 3000)


def dtm(value: str, *, precision: str = "dateTime", zone: str | None = None) -> str | None:
    """``YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]`` (HL7 v2 DTM/TS, chapter 2A) as a FHIR
    date, dateTime or instant; None when ``value`` is not a valid DTM (wrong shape, a
    calendar day or time that does not exist, an implausible year).

    FHIR dateTime needs a time zone once hours are given; HL7 v2 says a DTM without an offset
    is in the sender's local zone. ``zone`` (``+01:00``) is that zone when known (the offset
    of MSH-7); otherwise the value is read as UTC, documented in docs/hl7.md. The value keeps
    its own precision: a date stays a date, an hour gets ``:00`` minutes because FHIR has no
    hour-only time.
    """
    match = _DTM.match(value.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if not _valid_dtm(year, month, day, hour, minute, second, offset):
        return None
    if precision == "date" or (hour is None and precision != "instant"):
        return "-".join(p for p in (year, month, day) if p)
    if month is None or day is None:
        return None
    hour = hour or "00"
    if offset:
        tz = f"{offset[:3]}:{offset[3:]}"
    else:
        tz = zone or "Z"
    frac = fraction if fraction and len(fraction) > 1 else ""
    return f"{year}-{month}-{day}T{hour}:{minute or '00'}:{second or '00'}{frac}{tz}"


def _valid_dtm(
    year: str,
    month: str | None,
    day: str | None,
    hour: str | None,
    minute: str | None,
    second: str | None,
    offset: str | None,
) -> bool:
    if int(year) not in PLAUSIBLE_YEARS:
        return False
    if month is not None and not 1 <= int(month) <= 12:
        return False
    if day is not None:
        assert month is not None
        if not 1 <= int(day) <= calendar.monthrange(int(year), int(month))[1]:
            return False
    if hour is not None and int(hour) > 23:
        return False
    if minute is not None and int(minute) > 59:
        return False
    if second is not None and int(second) > 60:  # 60: a leap second (FHIR allows it)
        return False
    return offset is None or (int(offset[1:3]) <= 14 and int(offset[3:]) <= 59)


def zone_of(value: str) -> str | None:
    """The UTC offset of a DTM as FHIR writes it (``+01:00``), None when it has none."""
    match = _DTM.match(value.strip())
    if not match or not match.group(8):
        return None
    offset = match.group(8)
    return f"{offset[:3]}:{offset[3:]}"


def uri_for(name: str) -> str:
    """A namespace (HD) as a URI: OIDs, UUIDs and URLs as such, other names under LOCAL_URI."""
    name = name.strip()
    if re.match(r"^[0-2](\.\d+)+$", name):
        return f"urn:oid:{name}"
    if re.match(
        r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", name
    ):
        return f"urn:uuid:{name.lower()}"
    if re.match(r"^https?://\S+$", name):
        return name
    return f"{LOCAL_URI}:{quote(name, safe='')}"


def hd_system(segment: Segment, number: int, component: int, repetition: int = 0) -> str | None:
    """The system of an identifier whose authority is the HD in ``component`` (CX.4, EI.2..)."""
    universal = segment.get(number, component, 2, repetition)
    namespace = segment.get(number, component, 1, repetition)
    if universal:
        return uri_for(universal)
    if namespace:
        return uri_for(namespace)
    return None


def identifiers(segment: Segment, number: int, *, use: str | None = None) -> list[dict[str, Any]]:
    """CX repetitions -> Identifier (CX.1 value, CX.4 system, CX.5 type from table 0203)."""
    out: list[dict[str, Any]] = []
    for rep in range(len(segment.repetitions(number))):
        value = segment.get(number, 1, repetition=rep)
        if not value:
            continue
        type_code = segment.get(number, 5, repetition=rep)
        system = hd_system(segment, number, 4, rep)
        if system is None and type_code == "SS":
            system = "http://hl7.org/fhir/sid/us-ssn"
        out.append(
            _clean(
                use=use,
                type=concept("0203", type_code) if type_code else None,
                system=system,
                value=value,
            )
        )
    return out


def entity_identifier(segment: Segment, number: int, rep: int = 0) -> dict[str, Any] | None:
    """EI (entity identifier: EI.1 value, EI.2/EI.3 namespace) -> Identifier."""
    value = segment.get(number, 1, repetition=rep)
    if not value:
        return None
    universal = segment.get(number, 3, repetition=rep)
    namespace = segment.get(number, 2, repetition=rep)
    system = uri_for(universal) if universal else uri_for(namespace) if namespace else None
    return _clean(system=system, value=value)


def human_names(segment: Segment, number: int) -> list[dict[str, Any]]:
    """XPN -> HumanName (family XPN.1.1, given XPN.2 + XPN.3, prefix XPN.5, suffix XPN.4)."""
    out: list[dict[str, Any]] = []
    uses = {
        "L": "official",
        "D": "usual",
        "M": "maiden",
        "N": "nickname",
        "A": "anonymous",
        "C": "old",
        "B": "official",
        "S": "anonymous",
        "T": "temp",
        "P": "usual",
    }
    for rep in range(len(segment.repetitions(number))):
        family = segment.get(number, 1, 1, rep)
        given = [
            g
            for g in (
                segment.get(number, 2, repetition=rep),
                segment.get(number, 3, repetition=rep),
            )
            if g
        ]
        name = _clean(
            use=uses.get(segment.get(number, 7, repetition=rep)),
            family=family,
            given=given,
            prefix=[p for p in (segment.get(number, 5, repetition=rep),) if p],
            suffix=[
                s
                for s in (
                    segment.get(number, 4, repetition=rep),
                    segment.get(number, 6, repetition=rep),
                )
                if s
            ],
        )
        if family or given:
            out.append(name)
    return out


def person_name(
    segment: Segment, number: int, offset: int = 0, rep: int = 0
) -> dict[str, Any] | None:
    """The name inside an XCN (components start at 2: family, given, middle, suffix, prefix)."""
    family = segment.get(number, 2 + offset, 1, rep)
    given = [
        g
        for g in (
            segment.get(number, 3 + offset, repetition=rep),
            segment.get(number, 4 + offset, repetition=rep),
        )
        if g
    ]
    if not family and not given:
        return None
    return _clean(
        family=family,
        given=given,
        prefix=[p for p in (segment.get(number, 6 + offset, repetition=rep),) if p],
        suffix=[s for s in (segment.get(number, 5 + offset, repetition=rep),) if s],
    )


def addresses(segment: Segment, number: int) -> list[dict[str, Any]]:
    """XAD -> Address (street XAD.1.1, other XAD.2, city .3, state .4, zip .5, country .6,
    type .7 via the IG's table 0190 map)."""
    types = {
        "H": ("home", None),
        "B": ("work", None),
        "O": ("work", None),
        "C": ("temp", None),
        "M": (None, "postal"),
        "SH": (None, "postal"),
        "BA": ("old", None),
        "BI": (None, "both"),
        "P": ("home", None),
    }
    out: list[dict[str, Any]] = []
    for rep in range(len(segment.repetitions(number))):
        street = segment.get(number, 1, 1, rep) or segment.get(number, 1, repetition=rep)
        other = segment.get(number, 2, repetition=rep)
        use, kind = types.get(segment.get(number, 7, repetition=rep), (None, None))
        address = _clean(
            use=use,
            type=kind,
            line=[x for x in (street, other) if x],
            city=segment.get(number, 3, repetition=rep),
            state=segment.get(number, 4, repetition=rep),
            postalCode=segment.get(number, 5, repetition=rep),
            country=segment.get(number, 6, repetition=rep),
            district=segment.get(number, 9, repetition=rep),
        )
        if set(address) - {"use", "type"}:
            out.append(address)
    return out


def telecoms(segment: Segment, number: int, default_use: str | None = None) -> list[dict[str, Any]]:
    """XTN -> ContactPoint: XTN.1 (legacy) or XTN.12/XTN.7 numbers, XTN.4 email; use from
    XTN.2 (table 0201), system from XTN.3 (table 0202)."""
    uses = {
        "PRN": "home",
        "ORN": "home",
        "WPN": "work",
        "VHN": "home",
        "ASN": "temp",
        "EMR": "temp",
        "NET": "home",
        "BPN": "work",
        "PRS": "mobile",
    }
    systems = {
        "PH": "phone",
        "FX": "fax",
        "MD": "other",
        "CP": "phone",
        "BP": "pager",
        "Internet": "email",
        "X.400": "email",
        "TDD": "other",
        "TTY": "other",
    }
    out: list[dict[str, Any]] = []
    for rep in range(len(segment.repetitions(number))):
        email = segment.get(number, 4, repetition=rep)
        unformatted = segment.get(number, 12, repetition=rep)
        area, local, ext = (segment.get(number, i, repetition=rep) for i in (6, 7, 8))
        value = (
            segment.get(number, 1, repetition=rep)
            or unformatted
            or (f"({area}) {local}" if area and local else local)
            or email
        )
        if not value:
            continue
        equipment = segment.get(number, 3, repetition=rep)
        system = systems.get(equipment, "email" if value == email and "@" in value else "phone")
        code = segment.get(number, 2, repetition=rep)
        use = uses.get(code, default_use)
        if equipment == "CP" and code != "WPN":
            use = "mobile"
        point = _clean(system=system, value=value, use=use)
        if ext:
            point["extension"] = [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/contactpoint-extension",
                    "valueString": ext,
                }
            ]
        out.append(point)
    return out


def codeable(
    segment: Segment, number: int, rep: int = 0, *, table: str | None = None, offset: int = 0
) -> dict[str, Any] | None:
    """CWE/CE/CNE -> CodeableConcept: primary triplet (.1-.3) and alternate (.4-.6) codings,
    CWE.9 original text. ``table`` names the HL7 table when the sender leaves .3 empty."""
    codings: list[dict[str, Any]] = []
    for start in (1 + offset, 4 + offset):
        code = segment.get(number, start, repetition=rep)
        text = segment.get(number, start + 1, repetition=rep)
        system_name = segment.get(number, start + 2, repetition=rep)
        if not code:
            continue
        if not system_name and table:
            system_name = f"HL7{table}"
        system = code_system_url(system_name) if system_name else None
        table_name = system_name[3:] if system_name.upper().startswith("HL7") else None
        codings.append(
            _clean(
                system=system,
                code=code,
                display=text or (display(table_name, code) if table_name else None),
            )
        )
    text = segment.get(number, 9, repetition=rep) if not offset else ""
    if not text and not codings:
        text = segment.get(number, 2 + offset, repetition=rep)
    if not codings and not text:
        return None
    return _clean(coding=codings, text=text)


def decimal(value: str) -> float | int | None:
    """NM -> FHIR decimal (int when integral, so ``60`` stays ``60``)."""
    value = value.strip()
    if not _DECIMAL.match(value):
        return None
    number = float(value)
    return int(number) if number.is_integer() and "." not in value else number


def location_name(segment: Segment, number: int, rep: int = 0) -> str | None:
    """PL (point of care .1, room .2, bed .3, facility .4) as one readable name."""
    parts = [segment.get(number, i, 1, rep) for i in (1, 2, 3)]
    facility = segment.get(number, 4, 1, rep)
    joined = " ".join(p for p in parts if p)
    if not joined:
        return facility or None
    return f"{joined} ({facility})" if facility else joined
