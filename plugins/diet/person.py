"""The person a plan is for, and their energy requirement (Mifflin-St Jeor).

Mifflin MD, St Jeor ST, et al. Am J Clin Nutr. 1990;51(2):241-247: resting energy expenditure
(kcal/day) = 10 x weight (kg) + 6.25 x height (cm) - 5 x age (y) + 5 for men, - 161 for women.
For a recorded gender other than male or female the mean of the two constants (-78) is used.
The daily requirement is the REE times an activity factor (``data/plan.json``).
"""

from __future__ import annotations

from dataclasses import dataclass

SEX_CONSTANT = {"male": 5.0, "female": -161.0}
OTHER_SEX_CONSTANT = -78.0


@dataclass(frozen=True)
class Person:
    age: float | None = None  # years
    sex: str | None = None  # male | female | other | unknown (FHIR administrative gender)
    weight_kg: float | None = None
    height_cm: float | None = None
    activity: str = "light"
    #: Where each value came from ("Observation/12", "parameter", "Patient/3"), for the plan.
    sources: tuple[tuple[str, str], ...] = ()

    @property
    def complete(self) -> bool:
        return None not in (self.age, self.sex, self.weight_kg, self.height_cm)


def resting_energy(person: Person) -> float:
    """Mifflin-St Jeor REE in kcal/day; the person must be :attr:`Person.complete`."""
    assert person.weight_kg is not None and person.height_cm is not None
    assert person.age is not None
    constant = SEX_CONSTANT.get(person.sex or "", OTHER_SEX_CONSTANT)
    return 10 * person.weight_kg + 6.25 * person.height_cm - 5 * person.age + constant


def energy_requirement(
    person: Person, activity_factors: dict[str, float], default_kcal: float
) -> tuple[float, str]:
    """(kcal/day, how it was found): Mifflin-St Jeor x activity when the record (or the
    request) gives age, sex, weight and height, else the reference ``default_kcal``."""
    if not person.complete:
        missing = [
            name
            for name, value in (
                ("age", person.age),
                ("sex", person.sex),
                ("weight", person.weight_kg),
                ("height", person.height_cm),
            )
            if value is None
        ]
        return default_kcal, f"reference {default_kcal:,.0f} kcal (no {', '.join(missing)})"
    factor = activity_factors[person.activity]
    ree = resting_energy(person)
    text = (
        f"Mifflin-St Jeor {ree:,.0f} kcal x {factor} ({person.activity} activity) "
        f"for {person.sex}, {person.age:g} y, {person.weight_kg:.1f} kg, {person.height_cm:.1f} cm"
    )
    return ree * factor, text
