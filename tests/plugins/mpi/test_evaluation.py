"""The MPI against its evaluation set (tools/mpi_evaluation.py): perturbed duplicates with
known truth and hard negatives (twins, a parent and child of the same name). Automatic links
must reach precision >= 0.99 and recall >= 0.95, and every missed duplicate must at least be in
review; the exact-identifier rule, measured in the same run, finds far fewer."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from fhirhub.plugins.mpi.features import features_of
from fhirhub.plugins.mpi.model import load_model
from fhirhub.plugins.mpi.scoring import Scorer

REPO = Path(__file__).resolve().parents[3]


def evaluation_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "mpi_evaluation", REPO / "tools" / "mpi_evaluation.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["mpi_evaluation"] = module
    spec.loader.exec_module(module)
    return module


tool = evaluation_tool()


def check(figures: dict[str, Any]) -> None:
    mpi, baseline = figures["mpi"], figures["exact_identifier"]
    assert mpi["precision"] >= 0.99, mpi["false_links"]
    assert mpi["recall"] >= 0.95, mpi["reviewed_not_linked"]
    assert mpi["recall_with_review"] >= 0.99, mpi["missed"]
    assert baseline["recall"] < mpi["recall"]


def test_on_the_committed_sample(tmp_path: Path) -> None:
    people = tool.json.loads(tool.SAMPLE.read_text())
    assert len(people) == 100
    with tool.evaluation_service(tmp_path) as service:
        figures = tool.evaluate(people, service)
    check(figures)
    labels = {r.label for r in tool.build_set(people).records}
    assert {"twin", "parent-same-name", "nickname", "swapped-day-month", "missing"} <= labels


@pytest.mark.skipif(not tool.SYNTHEA.is_dir(), reason="../shared/data/synthea is not here")
def test_on_the_synthea_patients(tmp_path: Path) -> None:
    with tool.evaluation_service(tmp_path) as service:
        figures = tool.evaluate(tool.synthea_patients(), service)
    assert figures["records"] > 200
    check(figures)


def test_splink_scores_the_perturbations_as_designed() -> None:
    """The comparison levels the guards rely on, through splink itself."""
    scorer = Scorer(load_model())
    base = {"resourceType": "Patient", "gender": "male", "birthDate": "1980-03-04"}
    william = features_of(base | {"id": "a", "name": [{"family": "Müller", "given": ["William"]}]})
    bill = features_of(
        base
        | {"id": "b", "name": [{"family": "Mueller", "given": ["Bill"]}], "birthDate": "1980-04-03"}
    )
    twin = features_of(base | {"id": "c", "name": [{"family": "Müller", "given": ["Xavier"]}]})
    scores = {s.candidate_id: s for s in scorer.score(william, [bill, twin])}
    assert scores["b"].levels["given"] == 3  # a nickname of the formal name
    assert scores["b"].levels["birth_date"] == 3  # day and month swapped
    assert scores["b"].levels["family"] >= 2  # transliterated (ü as u, ü as ue)
    assert scores["c"].levels["given"] == 0
