"""A resource cut into retrieval chunks: its summary line, then its documents' text.

A chunk is what a citation points at: ``DocumentReference/42#2`` is the third chunk of that
document. Every chunk starts with the resource's summary line, so a chunk read alone still says
what and when it is about.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .render import (
    INDEXED_TYPES,
    attachment_text,
    decode_base64,
    narrative_text,
    patient_of,
    summary_line,
)

#: ``(content_type, data)`` of a ``Binary`` by reference ("Binary/7"), or None.
BinaryFetcher = Callable[[str], tuple[str, bytes] | None]


@dataclass(frozen=True)
class Chunk:
    resource_type: str
    resource_id: str
    chunk_no: int
    tenant: str | None
    patient: str | None
    text: str

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.resource_id}"

    @property
    def citation(self) -> str:
        return f"{self.reference}#{self.chunk_no}"


def attachments_of(resource: dict[str, Any]) -> list[dict[str, Any]]:
    kind = resource.get("resourceType")
    if kind == "DocumentReference":
        return [
            c["attachment"]
            for c in resource.get("content") or []
            if isinstance(c, dict) and isinstance(c.get("attachment"), dict)
        ]
    if kind == "DiagnosticReport":
        return [a for a in resource.get("presentedForm") or [] if isinstance(a, dict)]
    return []


def document_text(resource: dict[str, Any], fetch_binary: BinaryFetcher | None) -> str:
    """The text of a resource's attachments (inline data, or a ``Binary`` it points at)."""
    texts: list[str] = []
    for attachment in attachments_of(resource):
        content_type = str(attachment.get("contentType") or "text/plain")
        data = b""
        if attachment.get("data"):
            data = decode_base64(str(attachment["data"]))
        elif fetch_binary is not None and str(attachment.get("url") or "").startswith("Binary/"):
            found = fetch_binary(str(attachment["url"]))
            if found is not None:
                content_type, data = found
        if data:
            texts.append(attachment_text(content_type, data))
    return "\n\n".join(t.strip() for t in texts if t.strip())


def split_text(text: str, size: int) -> list[str]:
    """Pieces of about ``size`` characters, cut at paragraph, then sentence, boundaries."""
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n\s*\n", text) if s.strip()]
    pieces: list[str] = []
    current = ""
    for sentence in sentences:
        while len(sentence) > size:  # one very long "sentence" (a table, a list)
            cut = sentence.rfind(" ", 0, size)
            cut = cut if cut > size // 2 else size
            if current:
                pieces.append(current)
                current = ""
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if current and len(current) + len(sentence) + 1 > size:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        pieces.append(current)
    return pieces


def chunks_of(
    resource: dict[str, Any],
    tenant: str | None,
    *,
    size: int = 700,
    fetch_binary: BinaryFetcher | None = None,
) -> list[Chunk]:
    """The chunks of one resource (none for a type that is not indexed)."""
    kind = str(resource.get("resourceType") or "")
    if kind not in INDEXED_TYPES or not resource.get("id"):
        return []
    head = summary_line(resource)
    body = document_text(resource, fetch_binary)
    if not body and kind not in ("Observation", "Patient", "Encounter"):
        body = narrative_text(resource)
    pieces = split_text(body, size) if body else []
    texts = [f"{head}\n{p}" for p in pieces] if pieces else [head]
    patient = patient_of(resource)
    return [
        Chunk(kind, str(resource["id"]), number, tenant, patient, text)
        for number, text in enumerate(texts)
    ]
