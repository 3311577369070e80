"""From evidence to a grade: deterministic rules first, then splink's probability, then the
guards that keep a doubtful pair away from an automatic link.

Grades are FHIR's match grades (http://hl7.org/fhir/R4/extension-match-grade.html):
``certain`` (linked automatically), ``probable`` and ``possible`` (a person decides),
``certainly-not`` (never proposed).

1. A *trusted* identifier system (``trusted_identifier_systems``, e.g. a provincial health
   number) with a different value on each side: certainly not the same person.
2. The same identifier (system and value) on both sides: certain.
3. Otherwise splink's match probability against ``certain_threshold``,
   ``probable_threshold`` and ``possible_threshold``.
4. Guards: a probabilistic ``certain`` is lowered to ``probable`` when the records
   positively disagree on given name (twins: no better than a Jaro-Winkler similarity of
   0.92, and no nickname of each other), on birth date (parent and child of the same name:
   beyond a one-character typo or a day/month swap, or birth years more than one apart even
   when the strings differ by one digit, ``1985`` against ``1965``), on sex, or on a
   generational suffix (``Jr`` against ``Sr``): whatever the weights say, such a pair goes to
   review. A missing field is no disagreement.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from fhirhub.plugins.mpi.features import Features
from fhirhub.plugins.mpi.scoring import Score

GRADES = ("certain", "probable", "possible", "certainly-not")


@dataclass(frozen=True)
class Thresholds:
    certain: float = 0.99
    probable: float = 0.9
    possible: float = 0.5
    trusted_systems: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Verdict:
    """The decision on one candidate, with the reason a person reads in a review."""

    candidate_id: str
    grade: str | None  # None: below every threshold (not a candidate)
    score: float  # 0..1, what ``$match`` reports as ``search.score``
    reason: str
    levels: dict[str, int] = field(default_factory=dict)


def trusted_conflict(a: Features, b: Features, trusted: Iterable[str]) -> str | None:
    """The trusted system on which ``a`` and ``b`` carry different values, if any."""
    mine: dict[str, set[str]] = {}
    for system, value in a.identifiers:
        mine.setdefault(system, set()).add(value)
    theirs: dict[str, set[str]] = {}
    for system, value in b.identifiers:
        theirs.setdefault(system, set()).add(value)
    for system in trusted:
        if system in mine and system in theirs and not mine[system] & theirs[system]:
            return system
    return None


def shared_identifier(a: Features, b: Features) -> tuple[str, str] | None:
    common = set(a.identifiers) & set(b.identifiers)
    return min(common) if common else None


def disagreements(a: Features, b: Features, score: Score) -> list[str]:
    """The guards of rule 4 that fire for this pair (module docstring)."""
    found = []
    if score.levels.get("given", -1) in (0, 1):
        found.append("given names differ")
    if score.levels.get("birth_date", -1) in (0, 1):
        found.append("birth dates differ")
    elif a.birth_date and b.birth_date and abs(int(a.birth_date[:4]) - int(b.birth_date[:4])) > 1:
        found.append("birth years differ")  # one digit apart, but a generation apart
    if score.levels.get("sex", -1) == 0:
        found.append("sex differs")
    if a.generation and b.generation and a.generation != b.generation:
        found.append("generational suffixes differ")
    return found


def grade(a: Features, b: Features, score: Score | None, thresholds: Thresholds) -> Verdict:
    """The :class:`Verdict` for record ``a`` against candidate ``b`` (module docstring)."""
    levels = score.levels if score else {}
    conflict = trusted_conflict(a, b, thresholds.trusted_systems)
    if conflict is not None:
        return Verdict(b.patient_id, "certainly-not", 0.0, f"different {conflict}", levels)
    shared = shared_identifier(a, b)
    if shared is not None:
        return Verdict(b.patient_id, "certain", 1.0, f"same identifier {shared[0]}", levels)
    if score is None:
        return Verdict(b.patient_id, None, 0.0, "not scored", levels)
    p = score.probability
    if p >= thresholds.certain:
        guards = disagreements(a, b, score)
        if guards:
            return Verdict(b.patient_id, "probable", p, "; ".join(guards), levels)
        return Verdict(b.patient_id, "certain", p, "demographics agree", levels)
    if p >= thresholds.probable:
        return Verdict(b.patient_id, "probable", p, "demographics mostly agree", levels)
    if p >= thresholds.possible:
        return Verdict(b.patient_id, "possible", p, "demographics partly agree", levels)
    return Verdict(b.patient_id, None, p, "demographics disagree", levels)
