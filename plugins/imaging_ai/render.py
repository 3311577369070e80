"""The signed report as a person reads it: self-contained HTML and a PDF of the same text
(``presentedForm``)."""

from __future__ import annotations

import base64
import hashlib
from html import escape
from typing import Any

from fhirhub.plugins.imaging_ai.fhir_output import HUB_NOTE_AUTHOR

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


def _finding_text(observation: dict[str, Any]) -> str:
    name = observation.get("code", {}).get("text") or observation.get("code", {}).get(
        "coding", [{}]
    )[0].get("display", "finding")
    value = observation.get("valueQuantity", {}).get("value")
    probability = f" (model probability {value} %)" if value is not None else ""
    return f"{name}{probability}"


def _reason(observation: dict[str, Any]) -> str:
    """A declined finding's reason: its notes, less the hub's own (a carried-over decision's
    origin, which stays on the Observation)."""
    return "; ".join(
        n.get("text", "")
        for n in observation.get("note", [])
        if n.get("text") and n.get("authorString") != HUB_NOTE_AUTHOR
    )


def _finding_line(observation: dict[str, Any]) -> str:
    return escape(_finding_text(observation))


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
            notes = _reason(o)
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


def _latin1(text: str) -> str:
    """The PDF's standard fonts (Helvetica) cover Latin-1: anything else becomes its closest
    ASCII form (an accent dropped) or "?", never an error at signing."""
    import unicodedata

    out = []
    for char in text:
        try:
            char.encode("latin-1")
            out.append(char)
        except UnicodeEncodeError:
            plain = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
            out.append(plain or {"\u2014": "-", "\u2013": "-", "\u2019": "'"}.get(char, "?"))
    return "".join(out)


def render_pdf(
    report: dict[str, Any], findings: list[dict[str, Any]], signer: str, signed: str
) -> bytes:
    """The same report as :func:`render_html`, as a PDF (A4, Helvetica; fpdf2)."""
    from fpdf import FPDF

    approved = [o for o in findings if o.get("status") == "final"]
    declined = [o for o in findings if o.get("status") == "cancelled"]
    title = report.get("code", {}).get("text") or "Radiology report"
    pdf = FPDF(format="A4")
    pdf.set_title(_latin1(title))
    pdf.set_author(_latin1(signer))
    pdf.set_creator("fhirhub imaging_ai")
    pdf.add_page()

    def heading(text: str, size: int = 12) -> None:
        pdf.set_font("Helvetica", "B", size)
        pdf.multi_cell(0, size * 0.6, _latin1(text), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1)

    def paragraph(text: str, size: int = 10) -> None:
        pdf.set_font("Helvetica", "", size)
        pdf.multi_cell(0, size * 0.5, _latin1(text), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)

    heading(title, 16)
    studies = ", ".join(r.get("reference", "") for r in report.get("imagingStudy", []))
    paragraph(
        f"Patient: {report.get('subject', {}).get('reference', '-')} - Study: {studies} - "
        f"Report: DiagnosticReport/{report.get('id', '')}",
        9,
    )
    texts = sections_of(report)
    for name, section in SECTIONS.items():
        if name in texts:
            heading(section)
            paragraph(texts[name])
    heading("AI findings confirmed by the radiologist")
    paragraph("\n".join(f"- {_finding_text(o)}" for o in approved) or "None.")
    if declined:
        heading("AI findings not confirmed")
        lines = []
        for o in declined:
            notes = _reason(o)
            lines.append(f"- {_finding_text(o)}" + (f" - {notes}" if notes else ""))
        paragraph("\n".join(lines))
    if report.get("conclusion"):
        heading("Impression")
        paragraph(str(report["conclusion"]))
    paragraph(
        f"Signed by {signer} at {signed}. Findings were proposed by an image analysis model "
        "and decided one by one by the signing radiologist.",
        9,
    )
    return bytes(pdf.output())


def presented_form(
    data: str | bytes, signed: str, content_type: str = "text/html"
) -> dict[str, Any]:
    """An Attachment of the rendered report (``hash``: SHA-1 of the data, as R4 defines it)."""
    raw = data.encode() if isinstance(data, str) else data
    return {
        "contentType": content_type,
        "language": "en",
        "data": base64.b64encode(raw).decode(),
        "hash": base64.b64encode(hashlib.sha1(raw).digest()).decode(),
        "title": "Radiology report" + (" (PDF)" if content_type == "application/pdf" else ""),
        "creation": signed,
    }
