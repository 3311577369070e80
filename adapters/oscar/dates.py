"""OSCAR's dates, read honestly: unknown stays absent, impossible is an error, nothing invented.

OSCAR keeps "unknown" as zero dates (``0000-00-00``, ``0001-01-01``; MySQL without strict mode
accepts them), birth dates split over three varchar columns that may be partial (``1948``,
``1948-07``) or empty, and times in the clinic's local time without an offset. Its REST API
sends dates as epoch milliseconds, ISO strings with or without an offset, or ``yyyy-MM-dd``;
the SOAP services send ``xsd:dateTime``. A FHIR ``dateTime`` with a time needs an offset
(R4 §2.24.0.8 "dateTime": "If hours and minutes are specified, a time zone SHALL be
populated"), so local times get the clinic's zone from the settings.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from fhirhub.adapters.oscar.model import Temporal


class MappingError(ValueError):
    """A record that cannot be mapped without inventing or losing data (a dead letter)."""


#: Years before this are OSCAR's "unknown" markers (0000, 0001), not real dates.
_FIRST_REAL_YEAR = 1800
_ISO = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$"
)
_MILLIS = re.compile(r"^-?\d{10,14}$")


def _zero(text: str) -> bool:
    return text[:4] in ("0000", "0001") or text.startswith("0000-00-00")


def parse_datetime(value: Temporal, zone: ZoneInfo, *, field: str = "date") -> datetime | None:
    """An aware datetime, or None for empty and zero dates; ``MappingError`` for a value that
    is not a date (``2019-02-30``). Naive values are in the clinic's ``zone``."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.year < _FIRST_REAL_YEAR:
            return None
        return value if value.tzinfo else value.replace(tzinfo=zone)
    if isinstance(value, date):
        if value.year < _FIRST_REAL_YEAR:
            return None
        return datetime(value.year, value.month, value.day, tzinfo=zone)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    text = str(value).strip()
    if not text or text.lower() in ("null", "none"):
        return None
    if _MILLIS.match(text):
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    found = _ISO.match(text)
    if not found:
        raise MappingError(f"{field}: {text!r} is not a date")
    if _zero(text):
        return None
    year, month, day, hour, minute, second, fraction, offset = found.groups()
    try:
        parsed = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
        )
    except ValueError as exc:
        raise MappingError(f"{field}: {text!r} is not a real date ({exc})") from None
    if parsed.year < _FIRST_REAL_YEAR:
        return None
    if offset is None:
        return parsed.replace(tzinfo=zone)
    if offset == "Z":
        return parsed.replace(tzinfo=UTC)
    sign = -1 if offset[0] == "-" else 1
    digits = offset[1:].replace(":", "")
    delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    from datetime import timezone

    return parsed.replace(tzinfo=timezone(sign * delta))


def parse_date(value: Temporal, zone: ZoneInfo, *, field: str = "date") -> date | None:
    """The calendar date of a value (in the clinic's zone when it carries a time)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value if value.year >= _FIRST_REAL_YEAR else None
    parsed = parse_datetime(value, zone, field=field)
    return parsed.astimezone(zone).date() if parsed else None


def fhir_date(value: Temporal, zone: ZoneInfo, *, field: str = "date") -> str | None:
    parsed = parse_date(value, zone, field=field)
    return parsed.isoformat() if parsed else None


def fhir_datetime(value: Temporal, zone: ZoneInfo, *, field: str = "date") -> str | None:
    """A FHIR ``dateTime`` with the offset (clinic-local values keep their local time)."""
    parsed = parse_datetime(value, zone, field=field)
    return parsed.isoformat(timespec="seconds") if parsed else None


def fhir_instant(value: Temporal, zone: ZoneInfo, *, field: str = "date") -> str | None:
    parsed = parse_datetime(value, zone, field=field)
    return (
        parsed.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        if parsed
        else None
    )


def parse_time(value: Temporal, *, field: str = "time") -> time | None:
    """A time of day: MySQL TIME comes as ``timedelta`` from pymysql, else ``HH:MM[:SS]``."""
    if value is None:
        return None
    if isinstance(value, time):
        return value
    if isinstance(value, datetime):
        return value.time()
    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
        if not 0 <= seconds < 86400:
            raise MappingError(f"{field}: {value} is not a time of day")
        return time(seconds // 3600, seconds // 60 % 60, seconds % 60)
    text = str(value).strip()
    found = re.match(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?", text)
    if not found:
        raise MappingError(f"{field}: {text!r} is not a time")
    try:
        return time(int(found[1]), int(found[2]), int(found[3] or 0))
    except ValueError:
        raise MappingError(f"{field}: {text!r} is not a time") from None


def local_datetime(day: date, at: time, zone: ZoneInfo) -> str:
    """A clinic-local date and time as a FHIR instant with the zone's offset that day."""
    return datetime.combine(day, at, tzinfo=zone).isoformat(timespec="seconds")


def birth_date(year: str | None, month: str | None, day: str | None) -> str | None:
    """``Patient.birthDate`` from OSCAR's split columns: ``YYYY``, ``YYYY-MM`` or
    ``YYYY-MM-DD`` as far as known (FHIR ``date`` allows the partial forms); None when the
    year is unknown. A day without a month keeps only the year. Impossible values raise."""
    y, m, d = (str(part or "").strip() for part in (year, month, day))
    if not y or not y.isdigit() or int(y) < _FIRST_REAL_YEAR:
        if y and not y.isdigit():
            raise MappingError(f"year_of_birth {y!r} is not a year")
        return None
    if int(y) > date.today().year:
        raise MappingError(f"year_of_birth {y} is in the future")
    if not m or not m.isdigit() or int(m) == 0:
        if m and not m.isdigit():
            raise MappingError(f"month_of_birth {m!r} is not a month")
        return y
    if not 1 <= int(m) <= 12:
        raise MappingError(f"month_of_birth {m!r} is not a month")
    if not d or not d.isdigit() or int(d) == 0:
        if d and not d.isdigit():
            raise MappingError(f"date_of_birth {d!r} is not a day")
        return f"{y}-{int(m):02d}"
    try:
        return date(int(y), int(m), int(d)).isoformat()
    except ValueError:
        raise MappingError(f"birth date {y}-{m}-{d} does not exist") from None
