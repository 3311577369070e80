"""The MPI of one hub: its settings, candidate index, trained model and matcher."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from fhirhub.plugins.mpi.index import CandidateIndex
from fhirhub.plugins.mpi.matching import Matcher
from fhirhub.plugins.mpi.model import load_model
from fhirhub.plugins.mpi.rules import Thresholds, Verdict
from fhirhub.plugins.mpi.scoring import FIELDS, Score, Scorer, SplinkScorer
from fhirhub.sdk import Hub, HubLocal, PluginSettings, plugin_settings

PLUGIN_NAME = "mpi"


class MpiSettings(PluginSettings):
    """``[plugin.mpi]`` in ``fhirhub.toml`` or ``FHIRHUB_MPI_*`` (docs/mpi.md)."""

    #: splink match probability at or above which a pair is linked automatically.
    certain_threshold: float = 0.99
    #: ... at or above which a pair is ``probable`` (sent to review).
    probable_threshold: float = 0.9
    #: ... at or above which a pair is ``possible`` (sent to review); below: no match.
    possible_threshold: float = 0.5
    #: Identifier systems that identify one person everywhere (a national or provincial
    #: health number): two records with *different* values in one are certainly not the same.
    trusted_identifier_systems: list[str] = []
    #: A trained model (splink JSON, from ``fhirhub mpi-train``); empty: the shipped default.
    model_path: str = ""
    #: Match Patients as they are written (the consumer); off: only ``$match``.
    match_on_write: bool = True
    #: ``python`` (the model's levels evaluated in-process, fast) or ``splink`` (splink's own
    #: real-time SQL on DuckDB, the reference; slower): the same scores (docs/mpi.md).
    scoring_engine: Literal["python", "splink"] = "python"


class MpiService:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.settings: MpiSettings = plugin_settings(hub, PLUGIN_NAME, MpiSettings)
        self.index = CandidateIndex(hub)
        model = load_model(Path(self.settings.model_path) if self.settings.model_path else None)
        self.scorer = (
            SplinkScorer(model) if self.settings.scoring_engine == "splink" else Scorer(model)
        )
        self.thresholds = Thresholds(
            certain=self.settings.certain_threshold,
            probable=self.settings.probable_threshold,
            possible=self.settings.possible_threshold,
            trusted_systems=frozenset(self.settings.trusted_identifier_systems),
        )
        self.matcher = Matcher(self.index, self.scorer, self.thresholds)

    def agreement(self, verdict: Verdict) -> dict[str, str]:
        """Field by field: agree / partial / disagree / missing (what a reviewer reads)."""
        score = Score(verdict.candidate_id, verdict.score, 0.0, verdict.levels)
        return {field: score.agreement(field) for field in FIELDS if verdict.levels}


_services: HubLocal[MpiService] = HubLocal("mpi.service")


def service_of(hub: Hub) -> MpiService:
    return _services.setdefault(hub, lambda: MpiService(hub))
