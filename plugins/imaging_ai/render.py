"""The signed report as a person reads it: self-contained HTML (``presentedForm``)."""

from __future__ import annotations

import base64
import hashlib
from html import escape
from typing import Any

SECTION_URL = "http://fhirhub.org/fhir/StructureDefinition/radiology-report-section"
#: The free-text sections of a radiology report, in reading order; ``impression`` is
#: ``DiagnosticReport.conclusion``, the others are :data:`SECTION_URL` extensions.
SECTIONS = {
    "clinical-information": "Clinical information",
    "indication": "Indication",
    "technique": "Technique",
    "findings": "Findings",
}


def sections_of(report: dict[str, Any]) -> dict[str, str]:
    texts: dict[str, str] = {}
    for extension in report.get("extension", []):
        if extension.get("url") != SECTION_URL:
            continue
        parts = {e.get("url"): e for e in extension.get("extension", [])}
        name = parts.get("section", {}).get("valueCode")
        text = parts.get("text", {}).get("valueString")
        if name in SECTIONS and text:
            texts[name] = text
    return texts


def section_extension(name: str, text: str) -> dict[str, Any]:
    return {
        "url": SECTION_URL,
        "extension": [{"url": "section", "valueCode": name}, {"url": "text", "valueString": text}],
    }


def _finding_line(observation: dict[str, Any]) -> str:
    name = observation.get("code", {}).get("text") or observation.get("code", {}).get(
        "coding", [{}]
    )[0].get("display", "finding")
    value = observation.get("valueQuantity", {}).get("value")
    probability = f" (model probability {value} %)" if value is not None else ""
    return f"{escape(str(name))}{escape(probability)}"


def render_html(
    report: dict[str, Any], findings: list[dict[str, Any]], signer: str, signed: str
) -> str:
    approved = [o for o in findings if o.get("status") == "final"]
    declined = [o for o in findings if o.get("status") == "cancelled"]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Radiology report</title>",
        "<style>body{font-family:sans-serif;max-width:48em;margin:2em}h2{font-size:1.1em;"
        "margin-top:1.4em}.muted{color:#555;font-size:.9em}</style></head><body>",
        f"<h1>{escape(report.get('code', {}).get('text') or 'Radiology report')}</h1>",
        f"<p class='muted'>Patient: {escape(report.get('subject', {}).get('reference', '-'))}"
        f" &middot; Study: {escape(', '.join(r.get('reference', '') for r in report.get('imagingStudy', [])))}"
        f" &middot; Report: DiagnosticReport/{escape(str(report.get('id', '')))}</p>",
    ]
    texts = sections_of(report)
    for name, title in SECTIONS.items():
        if name in texts:
            parts.append(f"<h2>{title}</h2><p>{escape(texts[name])}</p>")
    parts.append("<h2>AI findings confirmed by the radiologist</h2>")
    if approved:
        parts.append("<ul>" + "".join(f"<li>{_finding_line(o)}</li>" for o in approved) + "</ul>")
    else:
        parts.append("<p>None.</p>")
    if declined:
        parts.append("<h2>AI findings not confirmed</h2><ul>")
        for o in declined:
            notes = "; ".join(n.get("text", "") for n in o.get("note", []) if n.get("text"))
            reason = f" &mdash; {escape(notes)}" if notes else ""
            parts.append(f"<li>{_finding_line(o)}{reason}</li>")
        parts.append("</ul>")
    if report.get("conclusion"):
        parts.append(f"<h2>Impression</h2><p>{escape(report['conclusion'])}</p>")
    parts.append(
        f"<p class='muted'>Signed by {escape(signer)} at {escape(signed)}. Findings were "
        "proposed by an image analysis model and decided one by one by the signing "
        "radiologist.</p></body></html>"
    )
    return "".join(parts)


def presented_form(html: str, signed: str) -> dict[str, Any]:
    data = html.encode()
    return {
        "contentType": "text/html",
        "language": "en",
        "data": base64.b64encode(data).decode(),
        "hash": base64.b64encode(hashlib.sha1(data).digest()).decode(),
        "title": "Radiology report",
        "creation": signed,
    }
