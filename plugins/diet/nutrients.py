"""The nutrients the optimiser tracks: their ids, units and names, in the food table's order.

Values in the food table are per 100 g of edible portion, in these units (USDA SR28's own).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Nutrient:
    id: str
    unit: str  # as SR28 gives it: kcal, g or mg
    title: str
    ucum: str  # the UCUM code for FHIR Quantities

    def format(self, value: float) -> str:
        """``1,234 mg``, ``56.3 g``: what a person reads in the plan."""
        digits = 0 if self.unit in ("kcal", "mg") and abs(value) >= 10 else 1
        return f"{value:,.{digits}f} {self.unit}"


NUTRIENTS: tuple[Nutrient, ...] = (
    Nutrient("energy", "kcal", "Energy", "kcal"),
    Nutrient("protein", "g", "Protein", "g"),
    Nutrient("fat", "g", "Total fat", "g"),
    Nutrient("saturated-fat", "g", "Saturated fat", "g"),
    Nutrient("carbohydrate", "g", "Carbohydrate", "g"),
    Nutrient("fibre", "g", "Fibre", "g"),
    Nutrient("sugars", "g", "Total sugars", "g"),
    Nutrient("sodium", "mg", "Sodium", "mg"),
    Nutrient("potassium", "mg", "Potassium", "mg"),
    Nutrient("calcium", "mg", "Calcium", "mg"),
    Nutrient("magnesium", "mg", "Magnesium", "mg"),
    Nutrient("phosphorus", "mg", "Phosphorus", "mg"),
    Nutrient("cholesterol", "mg", "Cholesterol", "mg"),
    Nutrient("iron", "mg", "Iron", "mg"),
    Nutrient("vitamin-c", "mg", "Vitamin C", "mg"),
)
BY_ID = {nutrient.id: nutrient for nutrient in NUTRIENTS}
INDEX = {nutrient.id: position for position, nutrient in enumerate(NUTRIENTS)}

#: Energy per gram used to turn "% of energy" bounds into grams (Atwater general factors).
KCAL_PER_GRAM = {"protein": 4.0, "carbohydrate": 4.0, "fat": 9.0, "saturated-fat": 9.0}
