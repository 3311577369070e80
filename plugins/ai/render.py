"""FHIR resources rendered to short text, for retrieval and for the model's context.

One line per clinical fact, starting with its type and date, so that a retrieved chunk (or a
tool result) reads on its own: "Observation 2019-03-04: Potassium 4.2 mmol/L (final)".
Identifiers, addresses and telecoms are never rendered: the text goes to the index and may go
to a model.
"""

from __future__ import annotations

import base64
import binascii
import html
import io
import re
from html.parser import HTMLParser
from typing import Any

#: The types whose text is indexed for retrieval and rendered by the tools.
INDEXED_TYPES = frozenset(
    {
        "Patient",
        "Condition",
        "Observation",
        "MedicationRequest",
        "MedicationStatement",
        "AllergyIntolerance",
        "Procedure",
        "Immunization",
        "DiagnosticReport",
        "DocumentReference",
        "CarePlan",
        "Encounter",
    }
)


def concept_text(concept: Any) -> str:
    """A CodeableConcept's words: its text, else its codings' displays, else its codes."""
    if not isinstance(concept, dict):
        return ""
    if concept.get("text"):
        return str(concept["text"])
    codings = [c for c in concept.get("coding") or [] if isinstance(c, dict)]
    for coding in codings:
        if coding.get("display"):
            return str(coding["display"])
    return ", ".join(str(c.get("code")) for c in codings if c.get("code"))


def first_concept(value: Any) -> str:
    if isinstance(value, list):
        return next((t for t in (concept_text(c) for c in value) if t), "")
    return concept_text(value)


def patient_of(resource: dict[str, Any]) -> str | None:
    """The id of the Patient a resource is about (``subject`` or ``patient``), if any."""
    if resource.get("resourceType") == "Patient":
        return str(resource.get("id") or "") or None
    for key in ("subject", "patient"):
        ref = resource.get(key)
        if isinstance(ref, dict):
            text = str(ref.get("reference") or "")
            if text.startswith("Patient/"):
                return text.split("/", 2)[1] or None
    return None


def date_of(resource: dict[str, Any]) -> str:
    for key in (
        "effectiveDateTime",
        "issued",
        "authoredOn",
        "onsetDateTime",
        "recordedDate",
        "performedDateTime",
        "occurrenceDateTime",
        "dateAsserted",
        "date",
    ):
        if resource.get(key):
            return str(resource[key])[:10]
    for key in ("effectivePeriod", "performedPeriod", "period"):
        period = resource.get(key)
        if isinstance(period, dict) and period.get("start"):
            return str(period["start"])[:10]
    return ""


def quantity_text(quantity: Any) -> str:
    if not isinstance(quantity, dict) or quantity.get("value") is None:
        return ""
    unit = quantity.get("unit") or quantity.get("code") or ""
    return f"{format_number(quantity['value'])} {unit}".strip()


def format_number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)


def value_text(resource: dict[str, Any]) -> str:
    if "valueQuantity" in resource:
        return quantity_text(resource["valueQuantity"])
    if "valueCodeableConcept" in resource:
        return concept_text(resource["valueCodeableConcept"])
    for key in ("valueString", "valueBoolean", "valueInteger", "valueDateTime"):
        if key in resource:
            return str(resource[key])
    return ""


def observation_text(resource: dict[str, Any]) -> str:
    parts = [concept_text(resource.get("code"))]
    value = value_text(resource)
    if value:
        parts.append(value)
    components = [
        f"{concept_text(c.get('code'))} {value_text(c)}".strip()
        for c in resource.get("component") or []
        if isinstance(c, dict)
    ]
    if components:
        parts.append("; ".join(components))
    text = " ".join(p for p in parts if p)
    status = resource.get("status")
    return f"{text} ({status})" if status else text


def medication_name(resource: dict[str, Any]) -> str:
    if resource.get("medicationCodeableConcept"):
        return concept_text(resource["medicationCodeableConcept"])
    ref = resource.get("medicationReference")
    if isinstance(ref, dict):
        return str(ref.get("display") or ref.get("reference") or "")
    return ""


def _status(resource: dict[str, Any], key: str = "status") -> str:
    value = resource.get(key)
    if isinstance(value, dict):
        return concept_text(value)
    return str(value or "")


def summary_line(resource: dict[str, Any]) -> str:
    """One line saying what the resource records (no identifiers)."""
    kind = str(resource.get("resourceType") or "")
    date = date_of(resource)
    head = f"{kind} {date}".strip()
    if kind == "Observation":
        body = observation_text(resource)
    elif kind == "Condition":
        clinical = _status(resource, "clinicalStatus")
        body = f"{concept_text(resource.get('code'))} (clinical status {clinical or 'unknown'})"
        if resource.get("abatementDateTime"):
            body += f", resolved {str(resource['abatementDateTime'])[:10]}"
    elif kind in ("MedicationRequest", "MedicationStatement"):
        body = f"{medication_name(resource)} ({_status(resource)})"
        dosage = [d.get("text") for d in resource.get("dosageInstruction") or [] if d.get("text")]
        if dosage:
            body += f", {'; '.join(dosage)}"
    elif kind == "AllergyIntolerance":
        body = f"allergy to {concept_text(resource.get('code'))}"
        reactions = [
            first_concept(r.get("manifestation"))
            for r in resource.get("reaction") or []
            if isinstance(r, dict)
        ]
        if any(reactions):
            body += f", reaction {', '.join(r for r in reactions if r)}"
    elif kind in ("Procedure", "Immunization"):
        body = concept_text(resource.get("code") or resource.get("vaccineCode"))
        body += f" ({_status(resource)})" if resource.get("status") else ""
    elif kind == "DiagnosticReport":
        body = concept_text(resource.get("code"))
        if resource.get("conclusion"):
            body += f": {resource['conclusion']}"
    elif kind == "DocumentReference":
        body = concept_text(resource.get("type")) or str(resource.get("description") or "")
    elif kind == "CarePlan":
        body = first_concept(resource.get("category")) + (
            f" ({_status(resource)})" if resource.get("status") else ""
        )
    elif kind == "Encounter":
        body = first_concept(resource.get("type")) or str(
            (resource.get("class") or {}).get("code") or ""
        )
        reasons = first_concept(resource.get("reasonCode"))
        if reasons:
            body += f" for {reasons}"
    elif kind == "Patient":
        body = (
            f"{resource.get('gender') or 'unknown'} gender, born {resource.get('birthDate') or '?'}"
        )
        if resource.get("deceasedDateTime"):
            body += f", died {str(resource['deceasedDateTime'])[:10]}"
    else:
        body = first_concept(resource.get("code")) or narrative_text(resource)[:200]
    return f"{head}: {body}".strip()


class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in ("p", "br", "div", "li", "tr", "h1", "h2", "h3", "h4"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_text(markup: str) -> str:
    parser = _TextOnly()
    parser.feed(markup)
    return html.unescape(re.sub(r"[ \t]+", " ", "".join(parser.parts))).strip()


def narrative_text(resource: dict[str, Any]) -> str:
    div = (resource.get("text") or {}).get("div")
    return html_text(div) if isinstance(div, str) else ""


def attachment_text(content_type: str, data: bytes) -> str:
    """Plain text of an attachment: text, HTML or PDF (``pypdf``); empty for other kinds."""
    kind = content_type.split(";")[0].strip().lower()
    if kind.startswith("text/html") or kind == "application/xhtml+xml":
        return html_text(data.decode("utf-8", "replace"))
    if kind.startswith("text/"):
        return data.decode("utf-8", "replace")
    if kind == "application/pdf":
        from pypdf import PdfReader

        try:
            reader = PdfReader(io.BytesIO(data))
            return "\n".join(page.extract_text() or "" for page in reader.pages)
        except Exception:  # noqa: BLE001 - a broken PDF is indexed without its text
            return ""
    return ""


def decode_base64(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        return b""
