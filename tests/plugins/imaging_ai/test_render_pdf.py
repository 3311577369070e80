"""The signed report's PDF: parses, holds the sections, findings and signer, and names beyond
Latin-1 (the PDF's standard fonts) never make signing fail."""

from __future__ import annotations

import io

from pypdf import PdfReader

from fhirhub.plugins.imaging_ai.render import render_pdf, section_extension


def test_pdf_holds_the_report_text_whatever_the_script() -> None:
    report = {
        "id": "r1",
        "code": {"text": "Chest X-ray"},
        "subject": {"reference": "Patient/p1"},
        "imagingStudy": [{"reference": "ImagingStudy/s1"}],
        "extension": [section_extension("indication", "Cough for three weeks — Łódź clinic")],
        "conclusion": "Focal opacity, right lower zone. " * 40,  # wraps over lines
    }
    findings = [
        {"status": "final", "code": {"text": "Focal opacity"}, "valueQuantity": {"value": 61.2}},
        {"status": "cancelled", "code": {"text": "Diffuse opacity"}, "note": [{"text": "motion"}]},
        {"status": "entered-in-error", "code": {"text": "Withdrawn"}},
    ]
    pdf = render_pdf(report, findings, "Dr Zoë Ångström 王", "2026-12-07T10:00:00Z")
    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf))
    text = " ".join(page.extract_text() for page in reader.pages)
    for expected in (
        "Chest X-ray",
        "Indication",
        "Cough for three weeks - ?ódz clinic",  # Ł: no Latin-1 form
        "Focal opacity (model probability 61.2 %)",
        "Diffuse opacity - motion",
        "Impression",
        "Signed by Dr Zoë Ångström ?",
    ):
        assert expected in " ".join(text.split()), expected
    assert "Withdrawn" not in text
    assert reader.metadata.author == "Dr Zoë Ångström ?"
