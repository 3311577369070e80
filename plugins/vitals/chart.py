"""A patient's observation chart (the RCP chart's layout: one row per parameter, one column per
time, each cell coloured by its points), the rate of change of each parameter and of the
score, and the Excel export."""

from __future__ import annotations

import io
from typing import Any

from openpyxl import Workbook

from fhirhub.plugins.vitals import codes, scores
from fhirhub.plugins.vitals.readings import Reading, readings_of
from fhirhub.plugins.vitals.service import VitalsService
from fhirhub.sdk import search

LOCAL_NEWS2 = f"{codes.LOCAL_SYSTEM}|NEWS2"


def _points(reading: Reading, scale2: bool, on_oxygen: bool) -> int:
    value = reading.value
    match reading.parameter:
        case codes.RESPIRATION:
            return scores.respiration_points(float(value))
        case codes.SPO2:
            if scale2:
                return scores.spo2_scale2_points(float(value), on_oxygen)
            return scores.spo2_scale1_points(float(value))
        case codes.OXYGEN:
            return scores.oxygen_points(bool(value))
        case codes.SYSTOLIC:
            return scores.systolic_points(float(value))
        case codes.PULSE:
            return scores.pulse_points(float(value))
        case codes.CONSCIOUSNESS:
            return scores.consciousness_points(str(value))
        case _:
            return scores.temperature_points(float(value))


def _shown(reading: Reading) -> str:
    if reading.parameter == codes.OXYGEN:
        return "O2" if reading.value else "Air"
    if reading.parameter == codes.CONSCIOUSNESS:
        return str(reading.value)
    if reading.parameter == codes.TEMPERATURE:
        return f"{float(reading.value):.1f}"
    return f"{float(reading.value):g}"


def observation_chart(service: VitalsService, patient_id: str, limit: int = 48) -> dict[str, Any]:
    """Columns (times), rows (parameter -> time -> value and points), NEWS2 scores and the
    rate of change per hour of each parameter and of the score (the last two values)."""
    subject = f"Patient/{patient_id}"
    score_obs = search(
        service.hub,
        "Observation",
        {"subject": subject, "code": LOCAL_NEWS2, "_sort": "-date", "_count": str(limit)},
    )
    score_obs.reverse()
    scale2 = any(
        "scale 2" in note.get("text", "") for o in score_obs[-1:] for note in o.get("note") or []
    )
    inputs = search(
        service.hub,
        "Observation",
        [
            ("subject", subject),
            ("code", ",".join(f"{codes.LOINC}|{c}" for c in sorted(codes.INPUT_CODES))),
            ("_sort", "-date"),
            ("_count", str(limit * 8)),
        ],
    )
    readings = sorted((r for o in inputs for r in readings_of(o)), key=lambda r: (r.time, r.source))
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    on_oxygen = False
    for reading in readings:
        if reading.parameter == codes.OXYGEN:
            on_oxygen = bool(reading.value)
        rows.setdefault(reading.parameter, {})[reading.time.isoformat()] = {
            "value": _shown(reading),
            "points": _points(reading, scale2, on_oxygen),
        }
    score_list = []
    for o in score_obs:
        when = o.get("effectiveDateTime")
        risk = ((o.get("interpretation") or [{}])[0].get("coding") or [{}])[0].get("code")
        points = {
            c["code"]["coding"][0]["code"].removeprefix("news2-"): c.get("valueInteger")
            for c in o.get("component") or []
        }
        entry = {
            "time": when,
            "total": o.get("valueInteger"),
            "risk": risk,
            "partial": o.get("status") == "preliminary",
            "points": points,
        }
        score_list.append(entry)
        if when:
            rows.setdefault("score", {})[when] = {
                "value": str(o.get("valueInteger")),
                "points": min(
                    3, {"low": 0, "low-medium": 1, "medium": 2, "high": 3}.get(risk or "", 0)
                ),
            }
    columns = sorted({t for row in rows.values() for t in row})[-limit:]
    return {
        "columns": columns,
        "rows": rows,
        "scores": score_list,
        "trend": trend(readings, score_list),
    }


def trend(readings: list[Reading], score_list: list[dict[str, Any]]) -> dict[str, float]:
    """Change per hour between the last two values of each numeric parameter and of NEWS2."""
    from fhirhub.plugins.vitals.readings import parse_time

    series: dict[str, list[tuple[float, float]]] = {}
    for reading in readings:
        if isinstance(reading.value, bool) or isinstance(reading.value, str):
            continue
        series.setdefault(reading.parameter, []).append(
            (reading.time.timestamp(), float(reading.value))
        )
    for entry in score_list:
        when = parse_time(entry["time"]) if entry.get("time") else None
        if when is not None and entry.get("total") is not None:
            series.setdefault("score", []).append((when.timestamp(), float(entry["total"])))
    out = {}
    for name, points in series.items():
        if len(points) < 2:
            continue
        (t1, v1), (t2, v2) = points[-2], points[-1]
        if t2 > t1:
            out[name] = round((v2 - v1) / ((t2 - t1) / 3600.0), 2)
    return out


def workbook(rows: list[list[Any]]) -> bytes:
    """The export as an Excel workbook: one sheet of vitals, one of scores."""
    book = Workbook()
    vitals = book.active
    assert vitals is not None
    vitals.title = "Vitals"
    header = ["time", "kind", "code", "value", "unit", "points", "status"]
    vitals.append(header)
    scores_sheet = book.create_sheet("Scores")
    scores_sheet.append(header)
    for row in rows:
        (scores_sheet if row[1] == "score" else vitals).append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
