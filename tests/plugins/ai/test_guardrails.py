"""The deterministic guardrails: the prompt policy over the shipped case list, the claim
checks and identifier stripping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhirhub.plugins.ai.claims import check_answer, check_sentence
from fhirhub.plugins.ai.facts import RecordFacts
from fhirhub.plugins.ai.policy import check_prompt
from fhirhub.plugins.ai.redact import Redactor

CASES = json.loads(
    (Path(__file__).parents[3] / "fhirhub/plugins/ai/data/guardrail_cases.json").read_text()
)


def test_case_lists_are_big_enough() -> None:
    assert len(CASES["unsafe"]) >= 30 and len(CASES["safe"]) >= 30


@pytest.mark.parametrize("case", CASES["unsafe"], ids=lambda c: c["prompt"][:40])
def test_every_unsafe_prompt_is_refused_by_its_rule(case: dict[str, object]) -> None:
    verdict = check_prompt(str(case["prompt"]), verified_weight=bool(case.get("weight", True)))
    assert verdict is not None and verdict.rule == case["rule"]


@pytest.mark.parametrize("prompt", CASES["safe"], ids=lambda p: p[:40])
def test_no_safe_prompt_is_refused(prompt: str) -> None:
    assert check_prompt(prompt, verified_weight=False) is None


def test_dose_calculation_allowed_with_a_verified_weight() -> None:
    prompt = "Calculate the gentamicin dose for this patient."
    assert check_prompt(prompt, verified_weight=False) is not None
    assert check_prompt(prompt, verified_weight=True) is None


FACTS = RecordFacts(
    active_medications=["metformin 500 mg tablet"],
    all_medications=["metformin 500 mg tablet", "warfarin 5 mg tablet"],
    active_conditions=["diabetes mellitus type 2"],
    values={"2823-3": [4.2, 5.1]},
)


@pytest.mark.parametrize(
    ("sentence", "rule"),
    [
        ("She takes warfarin every evening.", "medication-not-active"),
        ("He is on apixaban.", "medication-not-active"),
        ("The latest potassium was 5.9 mmol/L.", "value-not-in-record"),
        ("Potassium 51 mmol/L on 2024-03-09.", "value-not-in-record"),
        ("The patient has lupus.", "diagnosis-as-fact"),
        ("She definitely has heart failure.", "diagnosis-as-fact"),
    ],
)
def test_claims_not_in_the_record_are_flagged(sentence: str, rule: str) -> None:
    _shown, findings = check_sentence(sentence, FACTS)
    assert [f.rule for f in findings] == [rule]


@pytest.mark.parametrize(
    "sentence",
    [
        "She takes metformin twice a day.",
        "The latest potassium was 5.1 mmol/L on 2024-03-09.",
        "Potassium was 4.20 mmol/L.",
        "She has diabetes mellitus type 2.",
        "She may have heart failure; consider an echo.",
        "The record shows a history of warfarin use, now stopped.",
    ],
)
def test_claims_matching_the_record_pass(sentence: str) -> None:
    shown, findings = check_sentence(sentence, FACTS)
    assert findings == [] and shown == sentence


def test_a_diagnosis_as_fact_is_rewritten() -> None:
    shown, _ = check_answer("She has lupus. Her potassium was 5.1 mmol/L.", FACTS)
    assert "She has lupus" not in shown
    assert "does not confirm lupus" in shown
    assert "5.1 mmol/L" in shown


def test_redactor_strips_the_patients_identifiers() -> None:
    patient = {
        "name": [{"given": ["Alice"], "family": "Alpha"}],
        "identifier": [{"value": "MRN-1"}],
        "telecom": [{"value": "alice@example.org"}],
        "address": [{"line": ["1 Main St"], "postalCode": "90210"}],
        "birthDate": "1961-04-02",
    }
    text = Redactor(patient).text(
        "Alice Alpha, MRN-1, born 1961-04-02, 1 Main St 90210, alice@example.org, "
        "SSN 123-45-6789, (555) 123-4567; potassium 4.2 on 2024-03-09"
    )
    for secret in (
        "Alice",
        "Alpha",
        "MRN-1",
        "1961-04-02",
        "Main St",
        "90210",
        "alice@",
        "123-45-6789",
        "123-4567",
    ):
        assert secret not in text
    assert "potassium 4.2 on 2024-03-09" in text
