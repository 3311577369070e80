"""The food composition table: USDA SR28 per 100 g, and the curated default list.

``data/sr28/foods.csv.gz`` holds every SR28 food (8,789) with the fifteen nutrients of
:mod:`.nutrients`; ``data/foods.csv`` the curated default list (about 300 whole foods) with
the plugin's food group, a household serving, a sample price, allergen and pattern tags and the
meals a food may be planned for (see ``data/PROVENANCE.md``). A food of the full table that is
not in the list can still be planned when a request names it (``include``): it gets its first
SR28 household measure, a group from its SR28 food group, that group's median price, tags
from the same rules the list was tagged with, and every meal.

Loading is lazy and cached: the first optimisation in a process pays ~0.1 s, later ones
nothing.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from .nutrients import NUTRIENTS

DATA = Path(__file__).resolve().parent / "data"
SR28_VERSION = "USDA National Nutrient Database for Standard Reference, Release 28 (2015)"

#: SR28 food group code -> the plugin's food group, for foods outside the curated list.
SR28_GROUPS = {
    "0100": "dairy",
    "0400": "oil-fat",
    "0500": "poultry",
    "0700": "red-meat",
    "0800": "grain",
    "0900": "fruit",
    "1000": "pork",
    "1100": "vegetable",
    "1200": "nut-seed",
    "1300": "red-meat",
    "1400": "beverage",
    "1500": "fish",
    "1600": "legume",
    "1700": "red-meat",
    "1800": "grain",
    "1900": "sweet",
    "2000": "grain",
}
OTHER_GROUP = "other"


@dataclass(frozen=True)
class Food:
    id: str  # the SR28 NDB number
    name: str
    group: str
    serving: str  # household measure, e.g. "1 cup, chopped"
    serving_g: float
    price_per_100g: float
    tags: frozenset[str] = field(default_factory=frozenset)
    meals: str = "BLDS"  # meal codes the food may be planned for
    curated: bool = True


@dataclass(frozen=True)
class FoodTable:
    """Foods and their nutrients per 100 g (``per_100g[i, j]``: food i, nutrient j)."""

    foods: tuple[Food, ...]
    per_100g: np.ndarray
    version: str

    def index(self) -> dict[str, int]:
        return {food.id: position for position, food in enumerate(self.foods)}

    @property
    def groups(self) -> frozenset[str]:
        return frozenset(food.group for food in self.foods)


@cache
def sr28_rows() -> dict[str, tuple[str, str, np.ndarray]]:
    """Every SR28 food: NDB number -> (SR28 group, description, nutrients per 100 g). A value
    SR28 does not give (not analysed) is taken as 0."""
    rows: dict[str, tuple[str, str, np.ndarray]] = {}
    with gzip.open(DATA / "sr28" / "foods.csv.gz", "rt", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        for ndb, group, description, *values in reader:
            vector = np.array([float(v) if v else 0.0 for v in values], dtype=float)
            rows[ndb] = (group, description, vector)
    return rows


@cache
def sr28_weights() -> dict[str, list[tuple[str, float]]]:
    """NDB number -> household measures as (text, grams), in SR28's order."""
    weights: dict[str, list[tuple[str, float]]] = {}
    with gzip.open(DATA / "sr28" / "weights.csv.gz", "rt", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            text = f"{float(row['amount']):g} {row['measure']}"
            weights.setdefault(row["ndb"], []).append((text, float(row["grams"])))
    return weights


@cache
def _tag_spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads((DATA / "food_tags.json").read_text(encoding="utf-8"))
    return spec


def tags_for(group: str, description: str) -> frozenset[str]:
    """Allergen and pattern tags of a food outside the curated list (the list's own rules)."""
    spec = _tag_spec()
    found = {rule["tag"] for rule in spec["rules"] if re.search(rule["pattern"], description)}
    found.update(spec["group_tags"].get(group, []))
    for rule in spec["description_tags"]:
        if re.search(rule["pattern"], description):
            found.update(rule["tags"])
    if "crustacean" in found or "mollusc" in found:
        found.add("shellfish")
    return frozenset(found)


@cache
def default_table() -> FoodTable:
    """The curated default list as a :class:`FoodTable`."""
    path = DATA / "foods.csv"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    rows = sr28_rows()
    foods: list[Food] = []
    vectors: list[np.ndarray] = []
    with open(path, encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            foods.append(
                Food(
                    id=row["id"],
                    name=row["name"],
                    group=row["group"],
                    serving=row["serving"],
                    serving_g=float(row["serving_g"]),
                    price_per_100g=float(row["price_per_100g"]),
                    tags=frozenset(row["tags"].split()),
                    meals=row["meals"],
                )
            )
            vectors.append(rows[row["id"]][2])
    matrix = np.vstack(vectors)
    matrix.setflags(write=False)
    version = f"{SR28_VERSION}; curated list foods.csv sha256:{digest} ({len(foods)} foods)"
    return FoodTable(tuple(foods), matrix, version)


@cache
def group_prices() -> dict[str, float]:
    """The median sample price of each group in the curated list."""
    by_group: dict[str, list[float]] = {}
    for food in default_table().foods:
        by_group.setdefault(food.group, []).append(food.price_per_100g)
    return {group: float(np.median(prices)) for group, prices in by_group.items()}


def full_table_food(ndb: str) -> tuple[Food, np.ndarray] | None:
    """A food of the full SR28 table (None when SR28 has no such NDB number)."""
    row = sr28_rows().get(ndb)
    if row is None:
        return None
    sr_group, description, vector = row
    group = SR28_GROUPS.get(sr_group, OTHER_GROUP)
    measures = [m for m in sr28_weights().get(ndb, []) if 15 <= m[1] <= 300]
    serving, grams = measures[0] if measures else ("100 g", 100.0)
    price = group_prices().get(group, float(np.median(list(group_prices().values()))))
    food = Food(
        id=ndb,
        name=description,
        group=group,
        serving=serving,
        serving_g=grams,
        price_per_100g=price,
        tags=tags_for(group, description),
        meals="BLDS",
        curated=False,
    )
    return food, vector


def search_full_table(text: str, limit: int = 20) -> list[tuple[str, str, str]]:
    """Foods of the full table whose description contains every word of ``text``:
    (NDB number, description, plugin group), curated foods first."""
    words = [w for w in text.casefold().split() if w]
    if not words:
        return []
    curated = {food.id for food in default_table().foods}
    found = [
        (ndb, description, SR28_GROUPS.get(group, OTHER_GROUP))
        for ndb, (group, description, _vector) in sr28_rows().items()
        if all(word in description.casefold() for word in words)
    ]
    found.sort(key=lambda row: (row[0] not in curated, len(row[1])))
    return found[:limit]


NUTRIENT_COUNT = len(NUTRIENTS)
