"""ICD-10-CM as loaded, compared with the ``simple-icd-10-cm`` package's own answers, and the
CMS CSV format."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from simple_icd_10_cm import simple_icd_10_cm as cm

from fhirhub.plugins.terminology import icd10cm
from fhirhub.plugins.terminology.model import CodeSystemData, closure
from fhirhub.sdk import FhirError

pytestmark = pytest.mark.xdist_group("terminology")


def _chapter_code(number: str, data: CodeSystemData) -> str:
    return next(c.code for c in data.concepts if ("chapter", number) in c.properties)


def _collided(code: str) -> bool:
    """A block named like its one category (B99): one concept in the CodeSystem."""
    return cm.is_chapter_or_block(code) and cm.is_category(code)


def test_every_item_of_the_package_is_a_concept(icd_package: CodeSystemData) -> None:
    codes = {c.code for c in icd_package.concepts}
    package = set(cm.get_all_codes(with_dots=True))
    chapters = {str(n) for n in range(1, 23)}
    assert package - chapters <= codes
    assert len(codes) == len(icd_package.concepts)  # no duplicates
    billable = [c for c in icd_package.concepts if ("billable", "true") in c.properties]
    assert 70_000 < len(billable) < 80_000  # "~74k codes"
    assert all(cm.is_leaf(c.code) for c in billable)
    assert icd_package.url == "http://hl7.org/fhir/sid/icd-10-cm"
    assert icd_package.version[:4].isdigit()


def test_counts_per_chapter_match_the_package(icd_package: CodeSystemData) -> None:
    pairs = list(closure(icd_package.concepts))
    below: dict[str, set[str]] = {}
    for ancestor, code in pairs:
        below.setdefault(ancestor, set()).add(code)
    for number in range(1, 23):
        chapter = _chapter_code(str(number), icd_package)
        expected = set(cm.get_descendants(str(number)))
        assert below[chapter] == expected, chapter
    assert _chapter_code("1", icd_package) == "A00-B99"
    assert _chapter_code("4", icd_package) == "E00-E89"


def test_parent_and_children_of_200_random_codes_match_the_package(
    icd_package: CodeSystemData,
) -> None:
    by_code = {c.code: c for c in icd_package.concepts}
    children: dict[str, list[str]] = {}
    for concept in icd_package.concepts:
        for parent in concept.parents:
            children.setdefault(parent, []).append(concept.code)
    chapters = {str(n): _chapter_code(str(n), icd_package) for n in range(1, 23)}
    candidates = [c for c in cm.get_all_codes() if c not in chapters and not _collided(c)]
    for code in random.Random(18).sample(candidates, 200):
        parent = cm.get_parent(code)
        if _collided(parent):
            parent = (
                cm.get_parent(parent, prioritize_blocks=True) if cm.is_category(code) else parent
            )
        expected_parent = chapters.get(parent, parent)
        assert by_code[code].parents == [expected_parent], code
        assert children.get(code, []) == cm.get_children(code), code
        assert by_code[code].display == cm.get_description(code)


def test_seventh_character_codes_and_placeholders(icd_package: CodeSystemData) -> None:
    by_code = {c.code: c for c in icd_package.concepts}
    assert by_code["S52.521A"].parents == ["S52.521"]
    # T36.0X1A: the placeholder X pads the code to six characters before the 7th.
    assert by_code["T36.0X1A"].parents == ["T36.0X1"]
    assert by_code["T36.0X1"].parents == [cm.get_parent("T36.0X1")]
    assert ("kind", "extension") in by_code["T36.0X1A"].properties
    assert by_code["B99"].parents == ["A00-B99"]  # the B99 block is its category
    assert by_code["A00-B99"].abstract and not by_code["A00.0"].abstract


CSV = """CODE,SHORT DESCRIPTION,LONG DESCRIPTION
A000,"Cholera due to Vibrio cholerae 01, biovar cholerae","Cholera due to Vibrio cholerae 01, biovar cholerae"
A001,"Cholera due to Vibrio cholerae 01, biovar eltor","Cholera due to Vibrio cholerae 01, biovar eltor"
A0100,"Typhoid fever, unspecified","Typhoid fever, unspecified"
E119,Type 2 diabetes mellitus without complications,Type 2 diabetes mellitus without complications
T360X1A,"Poisoning by penicillins, accidental, init","Poisoning by penicillins, accidental (unintentional), initial encounter"
"""


def test_cms_csv_codes_are_stored_dotted_with_a_hierarchy(tmp_path: Path) -> None:
    path = tmp_path / "valid-icd10-2025.csv"
    path.write_text(CSV)
    data = icd10cm.from_cms_csv(path, "2025")
    by_code = {c.code: c for c in data.concepts}
    assert {"A00.0", "A00.1", "A01.00", "E11.9", "T36.0X1A"} <= set(by_code)
    assert by_code["A01.00"].display == "Typhoid fever, unspecified"
    assert by_code["A00.0"].parents == ["A00"] and by_code["A00"].abstract
    assert by_code["A01.00"].parents == ["A01"]
    assert by_code["T36.0X1A"].parents == ["T36"]  # no T36.0X1 or T36.0 in the file
    assert by_code["E11.9"].designations[0].value.startswith("Type 2")
    assert data.version == "2025"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("CODE,SHORT\nA000,x\n", "header"),
        ("CODE,SHORT DESCRIPTION,LONG DESCRIPTION\nA00-0,x,y\n", "Line 2"),
        ("CODE,SHORT DESCRIPTION,LONG DESCRIPTION\nA000,x\n", "Line 2"),
        ("CODE,SHORT DESCRIPTION,LONG DESCRIPTION\nA000,x,y\nA00.0,x,y\n", "twice"),
        ("CODE,SHORT DESCRIPTION,LONG DESCRIPTION\n", "no codes"),
    ],
)
def test_malformed_cms_csv_is_refused_with_the_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(FhirError) as caught:
        icd10cm.from_cms_csv(path, "2025")
    assert caught.value.status == 400
    assert message in str(caught.value.issues[0].diagnostics)
