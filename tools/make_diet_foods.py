"""Write the diet plugin's curated default food list, ``plugins/diet/data/foods.csv``.

About 300 common whole foods chosen by hand from USDA SR28 (the extract made by
``tools/extract_usda_sr28.py``): plain forms (raw, or cooked without salt), a few lower-sodium
staples (breads, crackers, canned beans) and one or two forms of each common meat, fish and
dairy food. For each food this script derives, by the rules below, what the optimiser needs and
writes it into the CSV, which is the editable source from then on:

* ``group``: the plugin's food group (variety limits and exclusions act on it);
* ``serving``: a household measure from SR28's ``WEIGHT`` table (:func:`serving`);
* ``price_per_100g``: a sample price in US dollars (see :data:`PRICES` and
  ``plugins/diet/data/PROVENANCE.md``: illustrative, not surveyed);
* ``tags``: allergens and other properties exclusions match (:func:`tags`);
* ``meals``: the meals a food may be planned for (``B`` breakfast, ``L`` lunch, ``D`` dinner,
  ``S`` snack).

Run ``python tools/make_diet_foods.py`` to regenerate; ``tests/plugins/diet/test_data.py``
checks that every food resolves in the table.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import re
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "plugins" / "diet" / "data"

#: (plugin group, SR28 NDB numbers). Order is kept in the output.
SELECTION: list[tuple[str, list[str]]] = [
    ("fruit", [
        "09003", "09021", "09040", "09042", "09050", "09070", "09063", "09089", "09139", "09148",
        "09176", "09181", "09184", "09191", "09226", "09236", "09252", "09279", "09286", "09298",
        "09302", "09316", "09326", "09433", "09340", "09019", "09207", "09132", "09200", "09112",
        "09266", "09421", "09291", "09218", "09150", "09238", "09254", "09037", "09079",
    ]),
    ("vegetable", [
        "11008", "11011", "11012", "11052", "11053", "11080", "11090", "11091", "11099", "11109",
        "11110", "11112", "11116", "11117", "11124", "11125", "11960", "11135", "11136", "11143",
        "11147", "11148", "11162", "11205", "11210", "11215", "11233", "11234", "11247", "11251",
        "11252", "11253", "11250", "11260", "11261", "11279", "11282", "11283", "11291", "11333",
        "11821", "11951", "11423", "11429", "11457", "11458", "11477", "11478", "11467", "11483",
        "11486", "11565", "11569", "11959", "11529", "11530", "11885", "11043", "11300", "11301",
        "11603", "11591", "11957", "11439", "09193",
    ]),
    ("starchy-vegetable", [
        "11168", "11305", "11299", "11674", "11367", "11508", "11371",
    ]),
    ("legume", [
        "16015", "16028", "16038", "16043", "16025", "16057", "16063", "16070", "16072", "16086",
        "16053", "16126", "16127", "16159", "16137", "16158", "16139", "16222", "16390", "16398",
        "11212", "16114", "16316", "16335",
    ]),
    ("grain", [
        "20006", "20010", "20013", "20029", "20032", "20037", "20045", "20047", "20089", "20121",
        "20125", "20110", "20115", "20134", "20137", "20141", "08180", "08013", "08060",
        "08091", "08113", "08038", "08001", "08037", "19806", "19816",
        "18075", "18069", "18060", "18044", "18029", "18033", "18039", "18064", "18041", "18042",
        "18258", "18266", "18001", "18363", "18364", "18235", "18228", "18226", "18342", "18348",
        "18416", "18429", "18449", "18024", "18293", "18283",
    ]),
    ("dairy", [
        "01077", "01079", "01082", "01085", "01116", "01117", "01118", "01256", "01287", "01120",
        "01289", "01009", "01260", "01028", "01012", "01016", "43352", "01019", "01032", "01037",
        "01040", "43405", "43597", "01035", "01049", "01056", "01145",
    ]),
    ("egg", ["01129", "01124", "01132", "01131"]),
    ("nut-seed", [
        "12061", "12063", "12087", "12085", "12122", "12143", "12152", "12155", "12006", "12014",
        "12037", "12023", "12198", "12220", "12078", "12195",
    ]),
    ("oil-fat", ["04053", "04582", "04044", "04584", "04518", "04618", "04025", "04058"]),
    ("poultry", ["05064", "05098", "05074", "05168", "05711", "05333"]),
    ("red-meat", ["23473", "23565", "23568", "13454", "23600", "13418", "17014", "17027"]),
    ("pork", ["10061", "10027", "10163", "10220", "10134"]),
    ("fish", [
        "15237", "15209", "15086", "15121", "15126", "15221", "15192", "15016", "15262", "15067",
        "15241", "15088", "15201", "15235", "15034", "15037",
    ]),
    ("shellfish", ["15151", "15140", "15148", "15159", "15165", "15231", "90240"]),
    ("sweet", ["19296", "19297", "19335", "19353", "19904"]),
    ("beverage", ["14209", "14355", "14278"]),
]  # fmt: skip

#: Sample prices, US dollars per 100 g as eaten, by group; :data:`PRICE_OVERRIDES` adjusts
#: single foods. Round figures of the order of 2020s US supermarket prices, set by the plugin's
#: authors from general knowledge, not from a price survey: replace them with your own.
PRICES = {
    "fruit": 0.45,
    "vegetable": 0.40,
    "starchy-vegetable": 0.25,
    "legume": 0.30,
    "grain": 0.20,
    "dairy": 0.40,
    "egg": 0.60,
    "nut-seed": 1.60,
    "oil-fat": 0.50,
    "poultry": 1.10,
    "red-meat": 1.90,
    "pork": 1.20,
    "fish": 2.20,
    "shellfish": 3.20,
    "sweet": 0.60,
    "beverage": 0.03,
}
PRICE_OVERRIDES = {
    r"^Bananas": 0.15,
    r"^Apples|^Oranges|^Carrots|^Cabbage|^Onions|^Potatoes|^Watermelon": 0.25,
    r"berries|^Cherries|^Raspberries|^Pomegranates": 1.10,
    r"^Lettuce|^Spinach|^Kale|^Arugula|^Watercress|^Asparagus": 0.80,
    r"^Milk": 0.11,
    r"^Cheese, (cheddar|swiss|parmesan|feta|provolone|mozzarella)": 1.30,
    r"^Bread|^Rolls|^Bagels|^English muffins|^Tortillas|^Crackers|^Muffins|^Pancakes": 0.55,
    r"^Cereals ready-to-eat": 0.90,
    r"^Rice|^Pasta|^Noodles|^Cereals, oats": 0.12,
    r"^Tofu|^Tempeh|^Hummus|^Soymilk": 0.45,
    r"^Peanut": 0.70,
    r"^Chicken": 0.95,
    r"^Fish, (tuna, (light|white), canned|sardine|salmon, chum, canned)": 1.10,
    r"^Raisins|^Dates|^Plums, dried|^Cranberries, dried": 0.90,
    r"^Honey|^Syrups, maple|^Chocolate": 1.20,
    r"^Sugars": 0.20,
}

#: Allergen and pattern tags: the rules live in ``plugins/diet/data/food_tags.json``, which the
#: plugin also applies at run time to foods taken from the full table.
TAGS = json.loads((DATA / "food_tags.json").read_text(encoding="utf-8"))
TAG_RULES: list[tuple[str, str]] = [(rule["tag"], rule["pattern"]) for rule in TAGS["rules"]]
GROUP_TAGS: dict[str, list[str]] = TAGS["group_tags"]

#: Meals each group may be planned for; :data:`MEAL_OVERRIDES` narrows single foods.
MEALS = {
    "fruit": "BLDS",
    "vegetable": "LD",
    "starchy-vegetable": "LD",
    "legume": "LD",
    "grain": "LD",
    "dairy": "BLDS",
    "egg": "BL",
    "nut-seed": "BLDS",
    "oil-fat": "BLD",
    "poultry": "LD",
    "red-meat": "LD",
    "pork": "LD",
    "fish": "LD",
    "shellfish": "LD",
    "sweet": "BS",
    "beverage": "BLDS",
}
MEAL_OVERRIDES = [
    (r"^Cereals|^Oat bran|^Wheat germ|^Pancakes|^Waffles|^Muffins|^Bagels|^English muffins", "B"),
    (r"^Bread|^Rolls|^Tortillas|^Crackers|^Snacks", "BLDS"),
    (
        r"^Carrots, baby|^Celery, raw|^Cucumber|^Peppers, sweet, .*, raw|^Tomatoes, red, ripe, raw|^Yambean|^Radishes",
        "LDS",
    ),
    (r"^Peanut butter|^Nuts, almond butter|^Hummus", "BLS"),
    (r"^Cream|^Butter|^Cheese, parmesan", "BLD"),
    (r"^Soymilk", "BLDS"),
    (r"^Pork, cured, ham", "BLD"),
    (r"^Sugars", "B"),
]

#: Serving measures preferred per group, as SR28 ``Msre_Desc`` patterns, tried in order.
SERVING_PATTERNS = {
    "oil-fat": [r"^(tbsp|tablespoon)"],
    "nut-seed": [r"^oz", r"^tbsp"],
    "poultry": [r"^3 oz", r"^oz"],
    "red-meat": [r"^3 oz", r"^oz"],
    "pork": [r"^3 oz", r"^oz"],
    "fish": [r"^3 oz", r"^oz", r"^fillet"],
    "shellfish": [r"^3 oz", r"^oz"],
    "sweet": [r"^(tbsp|tablespoon)", r"^oz", r"^tsp"],
    "grain": [r"^slice", r"^(roll|pita|tortilla|bagel|muffin|pancake|cakes?)\b", r"^serving"],
    "egg": [r"^large"],
}
HALVED_CUPS = frozenset({"grain", "legume", "starchy-vegetable"})
SMALL_MEASURES = frozenset({"oil-fat", "sweet", "nut-seed", "beverage"})
LIQUID = re.compile(r"^(Soymilk|Milk|Kefir|Beverages)|juice")
#: Foods whose measure SR28 lists first is not a household serving.
SERVING_OVERRIDES = [
    (r"^Bread, french|^Peanuts|^Bread, italian", [r"^oz"]),
    (r"^Tofu, soft", [r"^cup"]),
    (r"^Butter|^Cream, sour", [r"^(tbsp|tablespoon)"]),
    (r"^Raisins|^Cranberries, dried", [r"^(miniature box|small box|1 oz|oz)", r"^0.25 cup"]),
    (r"^Beverages, (coffee|tea)", [r"^cup"]),
]
CHEESE = re.compile(r"^Cheese, (?!cottage|ricotta)")


def load_table() -> tuple[dict[str, dict[str, str]], dict[str, list[dict[str, str]]]]:
    with gzip.open(DATA / "sr28" / "foods.csv.gz", "rt", encoding="utf-8") as handle:
        foods = {row["ndb"]: row for row in csv.DictReader(handle)}
    weights: dict[str, list[dict[str, str]]] = {}
    with gzip.open(DATA / "sr28" / "weights.csv.gz", "rt", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            weights.setdefault(row["ndb"], []).append(row)
    return foods, weights


def serving(group: str, description: str, options: list[dict[str, str]]) -> tuple[str, float]:
    """A household measure: the group's preferred measure when SR28 has one, else the first
    measure SR28 lists if it weighs 15-300 g, else the one closest to 100 g."""
    patterns = SERVING_PATTERNS.get(group, [])
    liquid = bool(LIQUID.match(description))
    for food_pattern, measure_patterns in SERVING_OVERRIDES:
        if re.search(food_pattern, description):
            patterns = measure_patterns
    if CHEESE.match(description):
        patterns = [r"^oz", r"^slice", r"^cup, shredded"]
    for pattern in patterns:
        for option in options:
            if re.search(pattern, option["measure"]):
                return _measure(option, group, liquid)
    for option in options:
        if 15 <= float(option["grams"]) <= 300:
            return _measure(option, group, liquid)
    if options:
        best = min(options, key=lambda o: abs(float(o["grams"]) - 100))
        return _measure(best, group, liquid)
    return "100 g", 100.0


def _measure(option: dict[str, str], group: str, liquid: bool = False) -> tuple[str, float]:
    """The measure as text and grams; a cup of a cooked grain, legume or starchy vegetable is
    halved (the Dietary Guidelines' ounce- and cup-equivalents use half cups), and a measure
    under 25 g (a tablespoon of hummus, half a cup of arugula) is multiplied up to at least
    25 g, except for fats, sweets, seeds and nuts, whose small measures are the real ones."""
    amount, grams = float(option["amount"]), float(option["grams"])
    measure = option["measure"]
    if group in HALVED_CUPS and measure.startswith("cup") and grams > 120 and not liquid:
        amount, grams = amount / 2, grams / 2
    elif grams < 25 and group not in SMALL_MEASURES:
        factor = math.ceil(25 / grams)
        amount, grams = amount * factor, grams * factor
    return f"{amount:g} {measure}", round(grams, 1)


def price(group: str, description: str) -> float:
    for pattern, value in PRICE_OVERRIDES.items():
        if re.search(pattern, description):
            return value
    return PRICES[group]


def tags(group: str, description: str) -> list[str]:
    found = [tag for tag, pattern in TAG_RULES if re.search(pattern, description)]
    found += GROUP_TAGS.get(group, [])
    for rule in TAGS["description_tags"]:
        if re.search(rule["pattern"], description):
            found += rule["tags"]
    if "crustacean" in found or "mollusc" in found:
        found.append("shellfish")
    return sorted(set(found))


def meals(group: str, description: str) -> str:
    for pattern, value in MEAL_OVERRIDES:
        if re.search(pattern, description):
            return value
    return MEALS[group]


def short_name(description: str) -> str:
    """A readable name: SR28's description without trailing preparation details."""
    name = re.sub(r" \(includes [^)]*\)", "", description)
    name = re.sub(
        r", (with added vitamin A and vitamin D|all commercial varieties|year round average)",
        "",
        name,
    )
    return name


def main() -> None:
    foods, weights = load_table()
    rows = []
    seen: set[str] = set()
    for group, numbers in SELECTION:
        for ndb in numbers:
            if ndb in seen:
                raise SystemExit(f"{ndb} is listed twice")
            seen.add(ndb)
            food = foods[ndb]
            description = food["description"]
            measure, grams = serving(group, description, weights.get(ndb, []))
            rows.append(
                {
                    "id": ndb,
                    "name": short_name(description),
                    "group": group,
                    "serving": measure,
                    "serving_g": grams,
                    "price_per_100g": f"{price(group, description):.2f}",
                    "tags": " ".join(tags(group, description)),
                    "meals": meals(group, description),
                }
            )
    with open(DATA / "foods.csv", "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} foods -> {DATA / 'foods.csv'}")


if __name__ == "__main__":
    main()
