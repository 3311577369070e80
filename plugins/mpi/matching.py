"""Matching one Patient against the index of its tenant: candidates, scores, verdicts.

The one place both paths meet: ``$match`` (a Patient from a client, not stored) and the
consumer of Patient versions (a stored Patient, matched after every write from any source).
"""

from __future__ import annotations

from dataclasses import dataclass

from fhirhub.plugins.mpi.features import Features
from fhirhub.plugins.mpi.index import CandidateIndex
from fhirhub.plugins.mpi.rules import Thresholds, Verdict, grade
from fhirhub.plugins.mpi.scoring import Scorer, SplinkScorer

_ORDER = {"certain": 0, "probable": 1, "possible": 2, "certainly-not": 3}


@dataclass
class Matcher:
    index: CandidateIndex
    scorer: Scorer | SplinkScorer
    thresholds: Thresholds

    def match(
        self, tenant: str, features: Features, *, exclude: frozenset[str] = frozenset()
    ) -> list[Verdict]:
        """Graded candidates for ``features`` in ``tenant`` (best first), without those in
        ``exclude`` and those a reviewer judged not the same person; ungraded ones dropped."""
        candidates = [
            c for c in self.index.candidates(tenant, features) if c.patient_id not in exclude
        ]
        if features.patient_id:
            rejected = self.index.rejected(tenant, features.patient_id)
            candidates = [c for c in candidates if c.patient_id not in rejected]
        if not candidates:
            return []
        scores = {s.candidate_id: s for s in self.scorer.score(features, candidates)}
        verdicts = [
            grade(features, c, scores.get(c.patient_id), self.thresholds) for c in candidates
        ]
        graded = [v for v in verdicts if v.grade is not None]
        graded.sort(key=lambda v: (_ORDER[v.grade or "certainly-not"], -v.score, v.candidate_id))
        return graded
