"""Value normalisation shared by the write side (index rows) and the query side (search values).

Both sides must normalise identically, otherwise a stored value and a searched value that the FHIR
rules call equal would not compare equal in SQL:

* ``fold_string``: string search is case- and accent-insensitive
  (http://hl7.org/fhir/R4/search.html#string);
* ``date_range``: every date search compares the *periods* that values and parameters cover
  (http://hl7.org/fhir/R4/search.html#date); a period is a pair of inclusive microsecond
  instants since the Unix epoch, UTC;
* ``number_range``: a number carries its precision, ``100`` means [99.5, 100.5)
  (http://hl7.org/fhir/R4/search.html#number).
"""

from __future__ import annotations

import calendar
import datetime as _dt
import re
import unicodedata
from decimal import Decimal, InvalidOperation

#: The smallest and largest instants (microseconds since epoch) any date period can have. They
#: stand for an open end (a Period without ``end``) and fit a signed 64-bit column.
MIN_INSTANT = -62135596800 * 1_000_000  # 0001-01-01T00:00:00Z
MAX_INSTANT = 253402300800 * 1_000_000 - 1  # 9999-12-31T23:59:59.999999Z

_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()
_SECONDS_PER_DAY = 86_400
_MICROS = 1_000_000

_WHITESPACE = re.compile(r"\s+")


def fold_string(value: str) -> str:
    """Fold a string for case- and accent-insensitive comparison.

    Decomposes (NFKD) and drops combining marks, so ``Évêque`` and ``eveque`` fold alike, then
    case-folds (``ß`` -> ``ss``) and collapses runs of whitespace to one space (trimmed). Used for
    ``index_string.value`` and the text of tokens, and by the query side on the searched value;
    ``:contains`` and the default "starts with" match are then plain ``LIKE`` on folded text.
    """
    if value.isascii():
        folded = value.lower()
    else:
        decomposed = unicodedata.normalize("NFKD", value)
        folded = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    if "  " in folded or "\t" in folded or "\n" in folded or "\r" in folded:
        return _WHITESPACE.sub(" ", folded).strip()
    return folded.strip()


_DATE_RE = re.compile(
    r"(?P<year>\d{4})"
    r"(?:-(?P<month>\d{2})"
    r"(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?"
    r")?)?)?"
)


def date_range(value: str) -> tuple[int, int] | None:
    """The period a FHIR date, dateTime or instant covers, as inclusive epoch microseconds (UTC).

    Accepts every precision FHIR allows (``2020``, ``2020-03``, ``2020-03-04``,
    ``2020-03-04T10:00``, ``2020-03-04T10:00:00``, ``2020-03-04T10:00:00.25``) with or without a
    timezone (``Z`` or ``+hh:mm``). The period is the whole unit of the last given component:
    ``2020`` covers 2020-01-01T00:00:00Z .. 2020-12-31T23:59:59.999999Z, ``10:00:00.25`` covers
    250000..259999 microseconds of that second. A value with a time but no timezone is taken as
    UTC (the spec leaves the zone to the server, http://hl7.org/fhir/R4/search.html#date); dates
    without time are calendar days in UTC. Returns None for text that is not such a value (or a
    calendar-impossible one like ``2021-02-30``).
    """
    match = _DATE_RE.fullmatch(value.strip())
    if match is None:
        return None
    year = int(match["year"])
    if year < 1:
        return None
    try:
        if match["month"] is None:
            first = _dt.date(year, 1, 1).toordinal()
            return _day_micros(first), _day_micros(first + 365 + calendar.isleap(year)) - 1
        month = int(match["month"])
        if match["day"] is None:
            days = calendar.monthrange(year, month)[1]
            first = _dt.date(year, month, 1).toordinal()
            return _day_micros(first), _day_micros(first + days) - 1
        day_ordinal = _dt.date(year, month, int(match["day"])).toordinal()
    except ValueError:
        return None
    if match["hour"] is None:
        return _day_micros(day_ordinal), _day_micros(day_ordinal + 1) - 1
    hour, minute = int(match["hour"]), int(match["minute"])
    second = int(match["second"]) if match["second"] is not None else 0
    if hour > 23 or minute > 59 or second > 60:  # 60: a leap second, as xs:dateTime allows
        return None
    seconds = hour * 3600 + minute * 60 + second
    tz = match["tz"]
    if tz and tz != "Z":
        offset = int(tz[1:3]) * 3600 + int(tz[4:6]) * 60
        seconds -= offset if tz[0] == "+" else -offset
    low = _day_micros(day_ordinal) + seconds * _MICROS
    if match["second"] is None:
        return low, low + 60 * _MICROS - 1
    fraction = match["fraction"]
    if not fraction:
        return low, low + _MICROS - 1
    digits = fraction[:6]
    unit = 10 ** (6 - len(digits))
    low += int(digits) * unit
    return low, low + unit - 1


def _day_micros(ordinal: int) -> int:
    return (ordinal - _EPOCH_ORDINAL) * _SECONDS_PER_DAY * _MICROS


def micros_to_instant(micros: int) -> str:
    """Format epoch microseconds as a FHIR instant (``2020-03-04T10:00:00.000000Z``)."""
    moment = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC) + _dt.timedelta(microseconds=micros)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def number_range(text: str | int | float) -> tuple[float, float, float]:
    """A number's value and the half-open range [low, high) its significant figures imply.

    http://hl7.org/fhir/R4/search.html#number: "100" has 3 significant figures and stands for
    [99.5, 100.5); "100.00" for [99.995, 100.005); the range is half a unit of the last written
    digit either side. Exponent notation scales it: "1e2" has 1 significant figure and stands
    for [50, 150); "1.00e2" for [99.5, 100.5). (The R4 page's table gives [95, 105) for "1e2",
    which matches no significant-figure rule; we apply the rule the page states.) Raises
    ``ValueError`` for text that is not a decimal number. JSON numbers that arrive as int/float
    are formatted with ``repr`` first, so a stored ``100`` and a stored ``100.0`` keep their
    written precision only as far as the JSON parser preserved it.
    """
    if isinstance(text, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(text, int):
        value = float(text)
        return value, value - 0.5, value + 0.5
    raw = repr(text) if isinstance(text, float) else text.strip()
    try:
        number = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"not a number: {raw!r}") from None
    if not number.is_finite():
        raise ValueError(f"not a finite number: {raw!r}")
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    half = Decimal(5).scaleb(exponent - 1)
    return float(number), float(number - half), float(number + half)
