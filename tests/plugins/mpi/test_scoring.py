"""The in-process scorer against splink's own: the same comparison levels and the same match
probabilities for every candidate pair of the evaluation set (tools/mpi_evaluation.py)."""

from __future__ import annotations

import math

from fhirhub.plugins.mpi.features import features_of
from fhirhub.plugins.mpi.model import LEVELS, load_model, settings
from fhirhub.plugins.mpi.scoring import Scorer, SplinkScorer
from tests.plugins.mpi.test_evaluation import tool


def test_python_and_splink_engines_agree_on_the_evaluation_set() -> None:
    people = tool.json.loads(tool.SAMPLE.read_text())[:40]
    records = [features_of(r.patient) for r in tool.build_set(people).records]
    model = load_model()
    fast, reference = Scorer(model), SplinkScorer(model)
    compared = 0
    for index, record in enumerate(records):
        candidates = records[:index]
        if not candidates:
            continue
        mine = {s.candidate_id: s for s in fast.score(record, candidates)}
        for theirs in reference.score(record, candidates):
            ours = mine[theirs.candidate_id]
            assert ours.levels == theirs.levels, (record, theirs.candidate_id)
            assert math.isclose(ours.weight, theirs.weight, abs_tol=1e-6)
            assert math.isclose(ours.probability, theirs.probability, abs_tol=1e-9)
            compared += 1
    assert compared > 3000


def test_the_splink_settings_have_the_levels_of_the_table() -> None:
    built = settings().get_settings("duckdb")
    for comparison in built.comparisons:
        field = comparison.output_column_name
        # null + the table's levels + else
        assert len(comparison.comparison_levels) == len(LEVELS[field]) + 2
