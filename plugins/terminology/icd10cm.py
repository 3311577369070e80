"""ICD-10-CM: from the ``simple-icd-10-cm`` package, or from the CMS "valid ICD-10" CSV.

The package ships the CDC's tabular XML and code list (every chapter, block, category,
subcategory and 7th-character extension, 98,466 items in the April 2026 release) and parses
them into a tree on import; this loader walks that tree. CodeSystem codes follow the
CDC's: categories and subcategories as dotted codes (``E11.9``), blocks as ranges
(``E08-E13``), and chapters by their code range (``E00-E89``) rather than their number, so a
chapter is a code that ``$subsumes`` and ``:below`` can name. A block with the same name as the
single category it holds (``B99``, ``O09``) is not a concept of its own: the category stands
for it.

The CMS CSV (``CODE,SHORT DESCRIPTION,LONG DESCRIPTION``) lists codes without the dot
(``A0100``); they are stored dotted (``A01.00``). It has no hierarchy: each code's parent is
the longest shorter code of the file, and missing categories are added as abstract concepts
without a display so that ``E11`` still subsumes ``E11.9``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fhirhub.plugins.terminology.model import ICD10CM, CodeSystemData, Concept, check_code
from fhirhub.sdk import invalid

_CHAPTER_RANGE = re.compile(r"\(([A-Z][0-9][0-9A-Z]-[A-Z][0-9][0-9A-Z])\)\s*$")
_PACKAGE_DATE = re.compile(r"([A-Za-z]+)-(\d+)-(\d{4})")
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        "january february march april may june july august september october november "
        "december".split()
    )
}
_KIND = {
    "chapter": "chapter",
    "section": "block",
    "category": "category",
    "subcategory": "subcategory",
    "extended subcategory": "extension",
}
#: A CMS ICD-10-CM code: a letter, a digit, then up to five letters or digits.
_CMS_CODE = re.compile(r"^[A-Z][0-9][0-9A-Z]{1,5}$")


def package_version() -> str:
    """The release of the data the installed ``simple-icd-10-cm`` ships (``2026-04-01``)."""
    from simple_icd_10_cm import simple_icd_10_cm as cm

    match = _PACKAGE_DATE.search(cm._classification_data_package_file_name)
    if match is None:
        return "unknown"
    month, day, year = match.groups()
    return f"{year}-{_MONTHS.get(month.lower(), 1):02d}-{int(day):02d}"


def from_package() -> CodeSystemData:
    """Every item of the package's ICD-10-CM tree as concepts, in the tree's order."""
    from simple_icd_10_cm import simple_icd_10_cm as cm

    concepts: list[Concept] = []
    by_code: dict[str, Concept] = {}
    # (node, the code its concept hangs under): iterative, pre-order, children in order.
    stack: list[tuple[Any, str | None]] = [
        (chapter, None) for chapter in reversed(cm._chapter_list)
    ]
    while stack:
        node, parent = stack.pop()
        kind = _KIND.get(node.type, node.type)
        code = node.name
        if kind == "chapter":
            match = _CHAPTER_RANGE.search(node.description)
            code = match.group(1) if match else f"chapter-{node.name}"
        properties = [("kind", kind)]
        if kind == "chapter":
            properties.append(("chapter", node.name))
        if not node.children and kind not in ("chapter", "block"):
            properties.append(("billable", "true"))
        abstract = kind in ("chapter", "block")
        existing = by_code.get(code)
        if existing is not None:
            # A block named like the one category it holds (B99): the category stands for
            # both, under the block's parent.
            existing.display = node.description
            existing.properties = properties
            existing.abstract = abstract
        else:
            concept = Concept(
                code=code,
                display=node.description,
                parents=[parent] if parent else [],
                properties=properties,
                abstract=abstract,
            )
            by_code[code] = concept
            concepts.append(concept)
        for child in reversed(node.children):
            stack.append((child, code))
    return CodeSystemData(
        url=ICD10CM,
        version=package_version(),
        concepts=concepts,
        name="ICD10CM",
        title="International Classification of Diseases, 10th Revision, Clinical Modification",
        case_sensitive=True,
        source="icd10cm",
    )


def dotted(code: str) -> str:
    """``A0100`` -> ``A01.00``; a code of three characters has no dot."""
    code = code.strip().upper().replace(".", "")
    if not _CMS_CODE.match(code):
        raise invalid(f"Malformed ICD-10-CM code {code!r}")
    return code if len(code) == 3 else f"{code[:3]}.{code[3:]}"


def from_cms_csv(path: Path | str, version: str) -> CodeSystemData:
    """Concepts from a CMS "valid ICD-10" CSV file (header ``CODE,SHORT DESCRIPTION,LONG
    DESCRIPTION``). Raises ``FhirError`` 400 naming the line of a malformed row."""
    text = Path(path).read_text(encoding="utf-8-sig", errors="strict")
    return cms_concepts(io.StringIO(text), version)


def cms_concepts(lines: Iterable[str], version: str) -> CodeSystemData:
    reader = csv.reader(lines)
    header = [h.strip().upper() for h in next(reader, [])]
    if header[:1] != ["CODE"] or "LONG DESCRIPTION" not in header:
        raise invalid(
            "Not a CMS ICD-10 CSV: the header must be CODE,SHORT DESCRIPTION,LONG DESCRIPTION"
        )
    long_at = header.index("LONG DESCRIPTION")
    short_at = header.index("SHORT DESCRIPTION") if "SHORT DESCRIPTION" in header else None
    by_code: dict[str, Concept] = {}
    for line_no, row in enumerate(reader, start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) <= long_at:
            raise invalid(f"Line {line_no}: expected {len(header)} columns, found {len(row)}")
        try:
            code = check_code(dotted(row[0]))
        except Exception as exc:
            raise invalid(f"Line {line_no}: {exc}") from None
        if code in by_code:
            raise invalid(f"Line {line_no}: code {code} appears twice")
        concept = Concept(code=code, display=row[long_at].strip() or None)
        if short_at is not None and row[short_at].strip():
            concept.designations.append(_designation(row[short_at].strip(), "short"))
        concept.properties.append(("billable", "true"))
        by_code[code] = concept
    if not by_code:
        raise invalid("The CSV holds no codes")
    for code in list(by_code):
        _link_parent(by_code, code)
    concepts = sorted(by_code.values(), key=lambda c: c.code)
    return CodeSystemData(
        url=ICD10CM,
        version=version,
        concepts=concepts,
        name="ICD10CM",
        title="ICD-10-CM (CMS valid codes)",
        source="icd10cm-csv",
    )


def _designation(value: str, use: str) -> Any:
    from fhirhub.plugins.terminology.model import Designation

    return Designation(value=value, language="en", use=use)


def _truncations(code: str) -> list[str]:
    """Shorter forms of a dotted code, longest first, as ICD-10-CM nests them: ``T36.0X1A``
    -> ``T36.0X1``, ``T36.0`` (a trailing placeholder ``X`` is not a level), ``T36``."""
    plain = code.replace(".", "")
    out: list[str] = []
    for length in range(len(plain) - 1, 2, -1):
        prefix = plain[:length]
        if prefix.endswith("X"):
            continue
        out.append(prefix if length == 3 else f"{prefix[:3]}.{prefix[3:]}")
    if len(plain) > 3:
        out.append(plain[:3])
    return list(dict.fromkeys(out))


def _link_parent(by_code: dict[str, Concept], code: str) -> None:
    concept = by_code[code]
    for shorter in _truncations(code):
        if shorter in by_code:
            concept.parents = [shorter]
            return
    if len(code.replace(".", "")) > 3:
        category = code[:3]
        by_code[category] = Concept(code=category, abstract=True, properties=[("kind", "category")])
        concept.parents = [category]
