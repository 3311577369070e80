"""Chunking and lexical ranking, on documents of each supported kind."""

from __future__ import annotations

import base64
import io

from fhirhub.plugins.ai.chunking import chunks_of, split_text
from fhirhub.plugins.ai.lexical import Bm25Index, tokens


def _doc(did: str, kind: str, data: bytes) -> dict[str, object]:
    return {
        "resourceType": "DocumentReference",
        "id": did,
        "status": "current",
        "subject": {"reference": "Patient/p1"},
        "content": [{"attachment": {"contentType": kind, "data": base64.b64encode(data).decode()}}],
    }


def _pdf(text: str) -> bytes:
    """A one-page PDF with ``text`` (built with pypdf, no external file)."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    page = writer.add_blank_page(width=300, height=200)
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
    )
    stream = DecodedStreamObject()
    stream.set_data(f"BT /F1 12 Tf 20 100 Td ({text}) Tj ET".encode())
    page[NameObject("/Contents")] = writer._add_object(stream)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_text_html_and_pdf_documents_are_chunked() -> None:
    plain = chunks_of(_doc("d1", "text/plain", b"Sepsis bundle: lactate within one hour."), "t")
    html = chunks_of(
        _doc("d2", "text/html", b"<p>Give <b>oxygen</b></p><script>evil()</script>"), "t"
    )
    pdf = chunks_of(_doc("d3", "application/pdf", _pdf("Warfarin bridging protocol")), "t")
    assert "lactate within one hour" in plain[0].text
    assert "Give oxygen" in html[0].text and "evil" not in html[0].text
    assert "Warfarin bridging protocol" in pdf[0].text
    assert plain[0].patient == "p1" and plain[0].tenant == "t"


def test_long_text_is_split_at_sentences() -> None:
    text = " ".join(f"Sentence number {n} is here." for n in range(100))
    pieces = split_text(text, 200)
    assert all(len(p) <= 200 for p in pieces)
    assert all(p.endswith(".") for p in pieces)
    assert " ".join(pieces) == text


def test_ranking_and_scopes() -> None:
    index = Bm25Index()
    a = chunks_of(_doc("a", "text/plain", b"Potassium 6.1 high; give calcium gluconate."), "t1")
    b = chunks_of(_doc("b", "text/plain", b"Potassium normal."), "t1")
    c = chunks_of(_doc("c", "text/plain", b"Calcium gluconate for hyperkalaemia."), "t2")
    for chunks in (a, b, c):
        index.replace("DocumentReference", chunks[0].resource_id, chunks)
    hits = index.search("calcium gluconate potassium", [("t1", "p1")], 5)
    assert [h.chunk.resource_id for h in hits] == ["a", "b"]
    assert index.search("hyperkalaemia", [("t1", "p1")], 5) == []
    index.replace("DocumentReference", "a", [])
    assert [h.chunk.resource_id for h in index.search("calcium", [("t1", "p1")], 5)] == []
    assert index.resources() == 2


def test_tokens_keep_dates_and_numbers() -> None:
    assert tokens("Potassium 4.2 on 2024-03-09") == [
        "potassium",
        "4.2",
        "2024-03-09",
        "2024",
        "2024-03",
    ]
