"""What every loader produces: a code system version as plain data, before it is stored.

Loaders (the ICD-10-CM package, the CMS CSV, LOINC, SNOMED CT RF2, a FHIR CodeSystem resource)
each turn their source into one :class:`CodeSystemData`; :mod:`.store` writes it. Keeping the
loaders free of SQL keeps each small and testable on its own.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from fhirhub.sdk import FhirError, invalid

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"

#: The longest code accepted: ICD-10-CM codes are 8 characters, SNOMED CT ids 18, FHIR codes
#: (a ``code`` primitive) are unbounded but codes past this length are not terminology.
MAX_CODE_LENGTH = 64


@dataclass
class Designation:
    value: str
    language: str | None = None
    use: str | None = None  # a use code (display, synonym, fully specified name)


@dataclass
class Concept:
    code: str
    display: str | None = None
    definition: str | None = None
    parents: list[str] = field(default_factory=list)
    designations: list[Designation] = field(default_factory=list)
    #: Properties as (code, value) pairs, values as strings (``kind=category``).
    properties: list[tuple[str, str]] = field(default_factory=list)
    inactive: bool = False
    abstract: bool = False


@dataclass
class CodeSystemData:
    url: str
    version: str
    concepts: list[Concept]
    name: str | None = None
    title: str | None = None
    content: str = "complete"
    case_sensitive: bool = True
    hierarchy: str | None = "is-a"
    source: str = "fhir"
    resource_id: str | None = None
    supplements: str | None = None
    tenant: str = ""


_WORD = re.compile(r"[a-z0-9]+")


def fold(text: str) -> str:
    """Lower case without accents: what the text filter compares."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def words(text: str) -> list[str]:
    """The folded words of ``text``, each at most 64 characters (the word index's key)."""
    return [w[:64] for w in _WORD.findall(fold(text))]


#: Words too common to narrow a typeahead: not indexed, and ignored in a ``filter``.
STOP_WORDS = frozenset("a an and as at by due for from in into of on or other the to with".split())


def index_words(text: str) -> list[str]:
    """The words of ``text`` the word index keeps (:data:`STOP_WORDS` and single letters
    left out: they would be a fifth of the rows and narrow nothing; single digits stay, as
    in "type 2")."""
    return [w for w in words(text) if kept_word(w)]


def kept_word(word: str) -> bool:
    return (len(word) > 1 or word.isdigit()) and word not in STOP_WORDS


#: The most ancestor pairs a CodeSystem resource posted to the hub may imply (ICD-10-CM has
#: half a million; a chain of 5,000 nested concepts would have 12.5 million).
MAX_POSTED_PAIRS = 2_000_000


def closure(concepts: Iterable[Concept], limit: int | None = None) -> Iterator[tuple[str, str]]:
    """Every (ancestor, descendant) pair of the is-a graph, the concept itself excluded.

    Raises ``FhirError`` 400 on a cycle (a CodeSystem whose hierarchy loops would make
    subsumption answer "subsumes" both ways), a parent that is not a concept of the system,
    or more than ``limit`` pairs.
    """
    total = 0
    parents: Mapping[str, list[str]] = {c.code: c.parents for c in concepts}
    done: dict[str, frozenset[str]] = {}
    for start in parents:
        if start in done:
            continue
        # Iterative depth-first walk: ICD chains are short, SNOMED's are not, and a
        # recursion limit must not decide whether a code system loads.
        stack: list[tuple[str, int]] = [(start, 0)]
        on_path: set[str] = {start}
        while stack:
            code, index = stack[-1]
            ups = parents.get(code, [])
            if index < len(ups):
                stack[-1] = (code, index + 1)
                parent = ups[index]
                if parent not in parents:
                    raise invalid(f"Concept {code!r} names parent {parent!r}, not in the system")
                if parent in on_path:
                    raise invalid(f"The hierarchy has a cycle through {parent!r} and {code!r}")
                if parent not in done:
                    stack.append((parent, 0))
                    on_path.add(parent)
                continue
            stack.pop()
            on_path.discard(code)
            ancestors: set[str] = set()
            for parent in ups:
                ancestors.add(parent)
                ancestors |= done[parent]
            done[code] = frozenset(ancestors)
            total += len(ancestors)
            if limit is not None and total > limit:
                raise FhirError(
                    400,
                    f"The hierarchy implies over {limit} ancestor pairs; load such a code "
                    "system with `fhirhub terminology load`",
                    code="too-costly",
                )
    for code, above in done.items():
        for ancestor in above:
            yield ancestor, code


def check_code(code: object) -> str:
    """A code as a loader or an operation accepts it: a non-empty string, no surrounding
    whitespace (FHIR ``code``), at most :data:`MAX_CODE_LENGTH` characters."""
    if not isinstance(code, str) or not code or code != code.strip():
        raise invalid(f"Malformed code {code!r}")
    if len(code) > MAX_CODE_LENGTH or any(c in code for c in "\r\n\t"):
        raise invalid(f"Malformed code {code[:80]!r}")
    return code
