"""The probabilistic model: splink's Fellegi-Sunter comparisons, trained by expectation
maximisation, saved as splink's own JSON.

The comparisons (one per field, each a ladder of agreement levels) are declared here; the
weights (m and u probabilities per level) are never written by hand: they are estimated by
splink, from a sample of the hub's own patients (``fhirhub mpi-train``) or, out of the box,
from the synthetic population ``tools/mpi_evaluation.py --train`` generates (the shipped
``data/model.json``). No term-frequency adjustment is used: scoring one record at a time must
not depend on statistics of the whole table.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_MODEL = Path(__file__).resolve().parent / "data" / "model.json"

#: The day/month swap level: the same year, day and month exchanged (``1980-03-04`` against
#: ``1980-04-03``), the commonest date-of-birth error between US and European forms.
SWAPPED_DAY_MONTH = (
    "substr(birth_date_l, 1, 4) = substr(birth_date_r, 1, 4)"
    " AND substr(birth_date_l, 6, 2) = substr(birth_date_r, 9, 2)"
    " AND substr(birth_date_l, 9, 2) = substr(birth_date_r, 6, 2)"
)

#: The comparisons, field by field, as data: each level below "missing" (either side null)
#: and above "anything else", best first. ``settings()`` turns them into splink comparison
#: levels; ``scoring.levels_of`` evaluates the very same table in Python.
#: Level kinds: ``exact``; ``jw`` (Jaro-Winkler similarity >= threshold); ``intersect`` (the
#: two array columns share a value); ``swapped`` (day and month exchanged); ``dl`` (Damerau-
#: Levenshtein distance <= threshold); ``same_year``.
LEVELS: dict[str, tuple[tuple[str, Any], ...]] = {
    "given": (("exact", None), ("intersect", "given_forms"), ("jw", 0.92), ("jw", 0.80)),
    "family": (("exact", None), ("jw", 0.92), ("intersect", "family_all"), ("jw", 0.80)),
    "birth_date": (("exact", None), ("swapped", None), ("dl", 1), ("same_year", None)),
    "sex": (("exact", None),),
    "postcode": (("exact", None),),
    "address": (("exact", None), ("jw", 0.9)),
    "phone": (("exact", None),),
    "email": (("exact", None),),
}

_LABELS = {
    ("intersect", "given_forms"): "Nickname or formal name",
    ("intersect", "family_all"): "Another family name (maiden, usual) agrees",
    ("swapped", None): "Day and month swapped",
    ("same_year", None): "Same year",
}


def _splink_level(field: str, kind: str, argument: Any) -> Any:
    import splink.comparison_level_library as cll

    if kind == "exact":
        return cll.ExactMatchLevel(field)
    if kind == "jw":
        return cll.JaroWinklerLevel(field, argument)
    if kind == "dl":
        return cll.DamerauLevenshteinLevel(field, argument)
    if kind == "intersect":
        return cll.ArrayIntersectLevel(argument, 1).configure(
            label_for_charts=_LABELS[(kind, argument)]
        )
    if kind == "swapped":
        return cll.CustomLevel(SWAPPED_DAY_MONTH, _LABELS[(kind, None)])
    if kind == "same_year":
        return cll.CustomLevel(
            f"substr({field}_l, 1, 4) = substr({field}_r, 1, 4)", _LABELS[(kind, None)]
        )
    raise ValueError(f"Unknown comparison level kind {kind!r}")


def settings(blocking_columns: Sequence[str] = ("birth_date", "family")) -> Any:
    """The splink ``SettingsCreator`` built from :data:`LEVELS` (module docstring)."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    comparisons: list[Any] = [
        cl.CustomComparison(
            output_column_name=field,
            comparison_levels=[
                cll.NullLevel(field),
                *(_splink_level(field, kind, argument) for kind, argument in levels),
                cll.ElseLevel(),
            ],
        )
        for field, levels in LEVELS.items()
    ]
    return SettingsCreator(
        link_type="dedupe_only",
        comparisons=comparisons,
        blocking_rules_to_generate_predictions=[block_on(c) for c in blocking_columns],
        retain_intermediate_calculation_columns=True,
    )


def load_model(path: Path | None = None) -> dict[str, Any]:
    """A trained model (splink's JSON): ``path``, or the shipped default."""
    model: dict[str, Any] = json.loads((path or DEFAULT_MODEL).read_text())
    return model


def train(records: list[dict[str, Any]], *, seed: int = 7) -> dict[str, Any]:
    """Estimate the model from ``records`` (``Features.record()`` dicts), unsupervised:

    1. the prior (two random records being the same person) from the pairs that agree on
       given name, family name and birth date, assumed to find 60 % of the duplicates;
    2. u probabilities (agreement among different people) from random pairs;
    3. m probabilities (agreement among the same person) by expectation maximisation, twice,
       blocked on birth date then on family name so each field is estimated where it was not
       the blocking rule.
    """
    import duckdb
    import pyarrow as pa
    from splink import DuckDBAPI, Linker, block_on

    logging.getLogger("splink").setLevel(logging.WARNING)
    connection = duckdb.connect()
    connection.execute("SET threads = 1")
    api = DuckDBAPI(connection=connection)
    linker = Linker(api.register(pa.Table.from_pylist(records)), settings(), log_level=None)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("given", "family", "birth_date")], recall=0.6
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6, seed=seed)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("birth_date"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("family"))
    model: dict[str, Any] = linker.misc.save_model_to_json()
    return model
