"""NEWS2 (Royal College of Physicians, 2017) and qSOFA (Sepsis-3), as pure functions.

The bands below are the RCP NEWS2 chart's, row by row (docs/vitals.md repeats them). Values
are rounded to the chart's resolution before banding (whole numbers; temperature to 0.1 °C),
so 35.04 °C is 35.0 (3 points) and 90.5 mmHg is 91 (2 points): the chart has no gaps.

A missing parameter is never a silent zero: it is listed in :attr:`Score.missing` and the score
is *partial*, the sum of what is known. A partial total is a lower bound of the full one (every
band scores 0 or more), so a partial score that already crosses a threshold is reported as such.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from fhirhub.plugins.vitals import codes
from fhirhub.plugins.vitals.readings import Reading

#: Risk bands in increasing order (NEWS2), and the qSOFA results.
NEWS2_RISKS = ("low", "low-medium", "medium", "high")
QSOFA_RISKS = ("negative", "positive")


@dataclass(frozen=True)
class Score:
    """One computed score: its total, points per parameter, risk band and inputs."""

    method: str  # "NEWS2" or "qSOFA"
    total: int
    risk: str
    points: dict[str, int]
    inputs: dict[str, Reading]
    missing: tuple[str, ...] = ()
    scale: int = 1  # NEWS2 SpO2 scale used
    notes: tuple[str, ...] = field(default=())

    @property
    def partial(self) -> bool:
        return bool(self.missing)

    @property
    def max_single(self) -> int:
        return max(self.points.values(), default=0)


def _whole(value: float) -> int:
    return int(Decimal(str(value)).quantize(Decimal("1"), rounding=ROUND_HALF_UP))


def _tenth(value: float) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def respiration_points(rate: float) -> int:
    r = _whole(rate)
    if r <= 8:
        return 3
    if r <= 11:
        return 1
    if r <= 20:
        return 0
    if r <= 24:
        return 2
    return 3


def spo2_scale1_points(spo2: float) -> int:
    s = _whole(spo2)
    if s <= 91:
        return 3
    if s <= 93:
        return 2
    if s <= 95:
        return 1
    return 0


def spo2_scale2_points(spo2: float, on_oxygen: bool) -> int:
    """Scale 2 (hypercapnic respiratory failure, target 88-92 %): at or above 93 % scores 0 on
    air but 1, 2, 3 on oxygen (93-94, 95-96, >= 97)."""
    s = _whole(spo2)
    if s <= 83:
        return 3
    if s <= 85:
        return 2
    if s <= 87:
        return 1
    if s <= 92 or not on_oxygen:
        return 0
    if s <= 94:
        return 1
    if s <= 96:
        return 2
    return 3


def oxygen_points(on_oxygen: bool) -> int:
    return 2 if on_oxygen else 0


def systolic_points(systolic: float) -> int:
    s = _whole(systolic)
    if s <= 90:
        return 3
    if s <= 100:
        return 2
    if s <= 110:
        return 1
    if s <= 219:
        return 0
    return 3


def pulse_points(pulse: float) -> int:
    p = _whole(pulse)
    if p <= 40:
        return 3
    if p <= 50:
        return 1
    if p <= 90:
        return 0
    if p <= 110:
        return 1
    if p <= 130:
        return 2
    return 3


def consciousness_points(acvpu: str) -> int:
    """Alert scores 0; new confusion, voice, pain or unresponsive score 3."""
    return 0 if acvpu == "A" else 3


def temperature_points(celsius: float) -> int:
    t = _tenth(celsius)
    if t <= Decimal("35.0"):
        return 3
    if t <= Decimal("36.0"):
        return 1
    if t <= Decimal("38.0"):
        return 0
    if t <= Decimal("39.0"):
        return 1
    return 2


def news2_risk(total: int, max_single: int) -> str:
    """High >= 7; medium 5-6; low-medium a 3 in any one parameter (total <= 4); else low."""
    if total >= 7:
        return "high"
    if total >= 5:
        return "medium"
    if max_single >= 3:
        return "low-medium"
    return "low"


def news2(latest: Mapping[str, Reading], scale2: bool = False) -> Score:
    """NEWS2 from the latest reading of each parameter (``codes.NEWS2_PARAMETERS`` keys)."""
    points: dict[str, int] = {}
    notes: list[str] = []
    oxygen = latest.get(codes.OXYGEN)
    on_oxygen = bool(oxygen.value) if oxygen is not None else False
    for name in codes.NEWS2_PARAMETERS:
        reading = latest.get(name)
        if reading is None:
            continue
        value = reading.value
        if name == codes.RESPIRATION:
            points[name] = respiration_points(float(value))
        elif name == codes.SPO2:
            if scale2:
                points[name] = spo2_scale2_points(float(value), on_oxygen)
                if oxygen is None and _whole(float(value)) >= 93:
                    notes.append("SpO2 scale 2 at or above 93 % scored as on air: no oxygen input")
            else:
                points[name] = spo2_scale1_points(float(value))
        elif name == codes.OXYGEN:
            points[name] = oxygen_points(bool(value))
        elif name == codes.SYSTOLIC:
            points[name] = systolic_points(float(value))
        elif name == codes.PULSE:
            points[name] = pulse_points(float(value))
        elif name == codes.CONSCIOUSNESS:
            points[name] = consciousness_points(str(value))
        elif name == codes.TEMPERATURE:
            points[name] = temperature_points(float(value))
    total = sum(points.values())
    missing = tuple(n for n in codes.NEWS2_PARAMETERS if n not in points)
    used = {n: latest[n] for n in points}
    return Score(
        "NEWS2",
        total,
        news2_risk(total, max(points.values(), default=0)),
        points,
        used,
        missing,
        2 if scale2 else 1,
        tuple(notes),
    )


def qsofa(latest: Mapping[str, Reading]) -> Score:
    """qSOFA: respiratory rate >= 22, altered mentation (anything but Alert on ACVPU),
    systolic <= 100 mmHg; one point each, positive at 2 or more."""
    points: dict[str, int] = {}
    if (r := latest.get(codes.RESPIRATION)) is not None:
        points[codes.RESPIRATION] = 1 if _whole(float(r.value)) >= 22 else 0
    if (c := latest.get(codes.CONSCIOUSNESS)) is not None:
        points[codes.CONSCIOUSNESS] = 0 if c.value == "A" else 1
    if (s := latest.get(codes.SYSTOLIC)) is not None:
        points[codes.SYSTOLIC] = 1 if _whole(float(s.value)) <= 100 else 0
    total = sum(points.values())
    missing = tuple(n for n in codes.QSOFA_PARAMETERS if n not in points)
    used = {n: latest[n] for n in points}
    return Score("qSOFA", total, "positive" if total >= 2 else "negative", points, used, missing)


def latest_readings(readings: list[Reading]) -> dict[str, Reading]:
    """The most recent reading of each parameter; ``readings`` come in the order they were
    recorded, and of two taken at the same time the later recorded wins (a set re-entered
    within the same second, charting precision being a second or a minute)."""
    latest: dict[str, Reading] = {}
    for reading in sorted(readings, key=lambda r: r.time):  # stable: recorded order on ties
        latest[reading.parameter] = reading
    return latest
