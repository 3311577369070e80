"""Scoring one record against its candidates with splink's real-time comparison.

splink compiles the trained model to SQL once (``sql_cache_key``) and runs it on DuckDB for
each query: the record and its candidates are two small in-memory tables, the result is one
row per candidate with the match probability and, per field, the agreement level reached
(``gamma_<field>``) and its weight. DuckDB connections are not shared between threads, so each
thread keeps its own (one DuckDB thread each: the query is tiny, and parallelism only costs
scheduling on a busy hub).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fhirhub.plugins.mpi.features import Features

#: The fields splink compares, in model order (``model.settings``).
FIELDS = ("given", "family", "birth_date", "sex", "postcode", "address", "phone", "email")


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


#: The exact-match level of each comparison (the number of non-null levels minus one).
_TOP_LEVEL = {"given": 4, "family": 4, "birth_date": 4, "address": 2}


class Scorer:
    """A trained model ready to score (see the module docstring)."""

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
