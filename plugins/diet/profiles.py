"""Condition profiles (``data/profiles/*.json``) and the targets they set for one person.

A profile lists bounds on nutrients, each citing its source. A bound may be absolute
(``min``/``max``), a share of the day's energy (``min_energy_percent``), per 1,000 kcal
(``min_per_1000_kcal``) or per kg of body weight (``min_per_kg``), and may apply only to a sex or
an age range (``when``); the first entry for a nutrient that applies to the person is used.

Combining: the ``general`` profile (nutritional adequacy) is always the base. A condition
profile's bound on a nutrient replaces the general bound on that nutrient, because the
condition's guideline is the more specific one (CKD's protein limit must replace the general
minimum of 10% of energy). Between condition profiles the stricter bound wins: the highest
minimum and the lowest maximum. A minimum above a maximum is left for the solver to find
infeasible, so that the explanation names both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from .nutrients import BY_ID, KCAL_PER_GRAM
from .person import Person

PROFILES = Path(__file__).resolve().parent / "data" / "profiles"
BASE_PROFILE = "general"


class MissingData(ValueError):
    """A profile needs a fact about the person that neither the record nor the request gave."""


@dataclass(frozen=True)
class Profile:
    id: str
    title: str
    version: str
    description: str
    sources: dict[str, str]
    bounds: tuple[dict[str, Any], ...]
    meal_shares: tuple[dict[str, Any], ...] = ()
    notes: str = ""


@dataclass(frozen=True)
class Side:
    """One side of a nutrient bound, with where it came from."""

    nutrient: str
    kind: str  # "min" or "max"
    value: float  # in the nutrient's unit
    profile: str
    source: str  # a key of the profile's sources
    rule: str  # how the value was found, e.g. "18% of energy"

    def label(self) -> str:
        nutrient = BY_ID[self.nutrient]
        sign = "≥" if self.kind == "min" else "≤"
        rule = f", {self.rule}" if self.rule else ""
        return f"{nutrient.title} {sign} {nutrient.format(self.value)} ({self.profile}{rule})"


@dataclass(frozen=True)
class MealShare:
    """A nutrient's share of the day at one meal (diabetes: carbohydrate per meal)."""

    nutrient: str
    meal: str
    min_percent: float | None
    max_percent: float | None
    profile: str
    source: str


@dataclass
class Targets:
    energy_kcal: float
    energy_text: str
    sides: dict[str, list[Side]] = field(default_factory=dict)  # nutrient -> its min/max sides
    meal_shares: list[MealShare] = field(default_factory=list)
    profiles: tuple[Profile, ...] = ()

    def bound(self, nutrient: str) -> tuple[float | None, float | None]:
        low = high = None
        for side in self.sides.get(nutrient, []):
            if side.kind == "min":
                low = side.value
            else:
                high = side.value
        return low, high


@cache
def load_profiles() -> dict[str, Profile]:
    profiles: dict[str, Profile] = {}
    for path in sorted(PROFILES.glob("*.json")):
        spec = json.loads(path.read_text(encoding="utf-8"))
        profiles[spec["id"]] = Profile(
            id=spec["id"],
            title=spec["title"],
            version=spec["version"],
            description=spec["description"],
            sources=dict(spec["sources"]),
            bounds=tuple(spec["bounds"]),
            meal_shares=tuple(spec.get("meal_shares", ())),
            notes=spec.get("notes", ""),
        )
    return profiles


def _applies(when: dict[str, Any] | None, person: Person) -> bool:
    if not when:
        return True
    if "sex" in when and person.sex != when["sex"]:
        return False
    if "age_min" in when and (person.age is None or person.age < when["age_min"]):
        return False
    return not ("age_max" in when and (person.age is None or person.age > when["age_max"]))


def _sides_of(profile: Profile, person: Person, energy: float) -> dict[str, list[Side]]:
    """The first applicable entry per nutrient, as min/max sides in the nutrient's unit."""
    chosen: dict[str, dict[str, Any]] = {}
    for entry in profile.bounds:
        if entry["nutrient"] not in chosen and _applies(entry.get("when"), person):
            chosen[entry["nutrient"]] = entry
    sides: dict[str, list[Side]] = {}
    for nutrient, entry in chosen.items():
        for kind in ("min", "max"):
            value, rule = _value(entry, kind, nutrient, person, energy, profile.id)
            if value is not None:
                side = Side(nutrient, kind, value, profile.id, entry["source"], rule)
                sides.setdefault(nutrient, []).append(side)
    return sides


def _value(
    entry: dict[str, Any], kind: str, nutrient: str, person: Person, energy: float, profile: str
) -> tuple[float | None, str]:
    if kind in entry:
        return float(entry[kind]), ""
    if f"{kind}_energy_percent" in entry:
        percent = float(entry[f"{kind}_energy_percent"])
        return percent / 100 * energy / KCAL_PER_GRAM[nutrient], f"{percent:g}% of energy"
    if f"{kind}_per_1000_kcal" in entry:
        per = float(entry[f"{kind}_per_1000_kcal"])
        return per * energy / 1000, f"{per:g} g per 1,000 kcal"
    if f"{kind}_per_kg" in entry:
        if person.weight_kg is None:
            raise MissingData(
                f"Profile {profile} needs the patient's body weight for its {nutrient} bound: "
                "record an Observation (LOINC 29463-7) or pass the weight parameter"
            )
        per = float(entry[f"{kind}_per_kg"])
        return per * person.weight_kg, f"{per:g} g/kg x {person.weight_kg:g} kg"
    return None, ""


def combine(profile_ids: list[str], person: Person, energy: float, energy_text: str) -> Targets:
    """The targets for ``person`` under the named profiles (see the module docstring)."""
    profiles = load_profiles()
    base = profiles[BASE_PROFILE]
    conditions = [profiles[p] for p in dict.fromkeys(profile_ids) if p != BASE_PROFILE]
    sides = _sides_of(base, person, energy)
    condition_sides = [_sides_of(profile, person, energy) for profile in conditions]
    for nutrient in {n for found in condition_sides for n in found}:
        strictest: dict[str, Side] = {}
        for found in condition_sides:
            for side in found.get(nutrient, []):
                current = strictest.get(side.kind)
                if (
                    current is None
                    or (side.kind == "min" and side.value > current.value)
                    or (side.kind == "max" and side.value < current.value)
                ):
                    strictest[side.kind] = side
        sides[nutrient] = list(strictest.values())
    shares = [
        MealShare(
            share["nutrient"],
            share["meal"],
            share.get("min"),
            share.get("max"),
            profile.id,
            share["source"],
        )
        for profile in conditions
        for share in profile.meal_shares
    ]
    return Targets(energy, energy_text, sides, shares, (base, *conditions))
