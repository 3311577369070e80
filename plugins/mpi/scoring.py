"""Scoring one record against its candidates with the trained splink model.

Two engines compute the same Fellegi-Sunter score from the same model (splink's JSON: a prior
and, per comparison level, the m and u probabilities splink estimated):

* :class:`Scorer` (the default) evaluates the comparison levels of ``model.LEVELS`` in Python
  (jellyfish's Jaro-Winkler and Damerau-Levenshtein) and sums splink's log2 Bayes factors: a
  few microseconds per pair, which keeps ``Patient/$match`` and matching on write fast;
* :class:`SplinkScorer` runs splink's own real-time comparison (``compare_records``: the model
  compiled to SQL once, run on DuckDB for each query), a few milliseconds per call. It is the
  reference: ``tests/plugins/mpi/test_scoring.py`` checks that both give the same levels and
  probabilities on the evaluation set. ``scoring_engine = "splink"`` selects it.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jellyfish

from fhirhub.plugins.mpi.features import Features
from fhirhub.plugins.mpi.model import LEVELS

#: The fields splink compares, in model order (``model.settings``).
FIELDS = tuple(LEVELS)


@dataclass(frozen=True)
class Score:
    """splink's verdict on one candidate: the probability and each field's agreement level.

    ``levels[field]`` is splink's comparison vector value: -1 when a side is missing, 0 for
    total disagreement, higher for closer agreement (the top level is an exact match).
    """

    candidate_id: str
    probability: float
    weight: float
    levels: dict[str, int]

    def agreement(self, field: str) -> str:
        """``agree`` / ``partial`` / ``disagree`` / ``missing``, for people reading a review."""
        level = self.levels.get(field, -1)
        if level < 0:
            return "missing"
        if level == 0:
            return "disagree"
        return "agree" if level == _TOP_LEVEL.get(field, 1) else "partial"


#: The exact-match level of each comparison (its best level).
_TOP_LEVEL = {field: len(levels) for field, levels in LEVELS.items()}


def levels_of(a: dict[str, Any], b: dict[str, Any]) -> dict[str, int]:
    """splink's comparison vector for records ``a`` and ``b`` (``Features.record()`` dicts),
    evaluated in Python from :data:`model.LEVELS`: -1 missing, 0 else, n for the best level."""
    out = {}
    for field, levels in LEVELS.items():
        left, right = a.get(field), b.get(field)
        if left is None or right is None:
            out[field] = -1
            continue
        gamma = 0
        for position, (kind, argument) in enumerate(levels):
            if _level_holds(kind, argument, field, a, b):
                gamma = len(levels) - position
                break
        out[field] = gamma
    return out


def _level_holds(
    kind: str, argument: Any, field: str, a: dict[str, Any], b: dict[str, Any]
) -> bool:
    left, right = a[field], b[field]
    if kind == "exact":
        return bool(left == right)
    if kind == "jw":
        return bool(jellyfish.jaro_winkler_similarity(left, right) >= argument)
    if kind == "dl":
        return bool(jellyfish.damerau_levenshtein_distance(left, right) <= argument)
    if kind == "intersect":
        return bool(set(a.get(argument) or ()) & set(b.get(argument) or ()))
    if kind == "swapped":
        return bool(left[:4] == right[:4] and left[5:7] == right[8:10] and left[8:10] == right[5:7])
    if kind == "same_year":
        return bool(left[:4] == right[:4])
    raise ValueError(f"Unknown comparison level kind {kind!r}")


class Scorer:
    """The trained model, evaluated in Python (see the module docstring)."""

    def __init__(self, model: dict[str, Any]) -> None:
        self.model = model
        prior = float(model["probability_two_random_records_match"])
        self._prior = math.log2(prior / (1 - prior))
        self._weights: dict[str, list[float]] = {}
        by_name = {c["output_column_name"]: c for c in model["comparisons"]}
        for field, levels in LEVELS.items():
            trained = [
                level
                for level in by_name[field]["comparison_levels"]
                if not level.get("is_null_level")
            ]
            if len(trained) != len(levels) + 1:
                raise ValueError(
                    f"The model's comparison {field!r} does not have the levels of model.LEVELS"
                )
            # trained[0] is the best level (gamma n) ... trained[-1] the else level (gamma 0).
            self._weights[field] = [_log2_bayes_factor(level) for level in reversed(trained)]

    def score(self, record: Features, candidates: Sequence[Features]) -> list[Score]:
        left = record.record()
        out = []
        for candidate in candidates:
            levels = levels_of(left, candidate.record())
            weight = self._prior + sum(
                self._weights[field][gamma] for field, gamma in levels.items() if gamma >= 0
            )
            probability = 1.0 if weight > 1000 else 2**weight / (1 + 2**weight)
            out.append(Score(candidate.patient_id, probability, weight, levels))
        return out


def _log2_bayes_factor(level: dict[str, Any]) -> float:
    m, u = level.get("m_probability"), level.get("u_probability")
    if not m or not u:
        return 0.0  # a level splink could not train: no evidence either way
    return math.log2(float(m) / float(u))


class SplinkScorer:
    """splink's own real-time scoring on DuckDB (see the module docstring)."""

    def __init__(self, model: dict[str, Any]) -> None:
        self.model = model
        self._local = threading.local()
        # The SQL cache is keyed by model: two hubs with different models in one process
        # must not share compiled SQL.
        self._cache_key = f"fhirhub-mpi-{id(self)}"
        logging.getLogger("splink").setLevel(logging.WARNING)

    def _api(self) -> Any:
        api = getattr(self._local, "api", None)
        if api is None:
            import duckdb
            from splink import DuckDBAPI

            connection = self._local.connection = duckdb.connect()
            connection.execute("SET threads = 1")
            api = self._local.api = DuckDBAPI(connection=connection)
        return api

    def score(self, record: Features, candidates: Sequence[Features]) -> list[Score]:
        """One :class:`Score` per candidate, in no particular order."""
        if not candidates:
            return []
        from splink.internals.realtime import compare_records

        left = [record.record()]
        right = [candidate.record() for candidate in candidates]
        api = self._api()
        result = compare_records(left, right, self.model, api, sql_cache_key=self._cache_key)
        try:
            rows = result.as_record_list()
        finally:
            # compare_records leaves its two input tables and its result in the connection.
            uid = result.physical_name.rsplit("_", 1)[1]
            connection = self._local.connection
            connection.execute(f"DROP TABLE IF EXISTS {result.physical_name}")
            for side in ("left", "right"):
                connection.execute(f"DROP VIEW IF EXISTS __splink__compare_records_{side}_{uid}")
            api._intermediate_table_cache.clear()
        return [
            Score(
                candidate_id=str(row["unique_id_r"]),
                probability=float(row["match_probability"]),
                weight=float(row["match_weight"]),
                levels={field: int(row[f"gamma_{field}"]) for field in FIELDS},
            )
            for row in rows
        ]
