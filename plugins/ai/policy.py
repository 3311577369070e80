"""Guardrails before the model: requests outside policy are refused or redirected, by rules
that are plain regular expressions (deterministic, listed in docs/ai.md, tested against a list
of unsafe and safe prompts in ``data/guardrail_cases.json``).

A *refusal* ends the turn with the reason; a *redirect* ends it with what to do instead (record
a verified weight, ask a pharmacist, call a crisis line). No model sees a refused prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    id: str
    action: str  # "refuse" | "redirect"
    pattern: re.Pattern[str]
    message: str


def _rx(text: str) -> re.Pattern[str]:
    return re.compile(text, re.IGNORECASE)


RULES: tuple[Rule, ...] = (
    Rule(
        "prompt-injection",
        "refuse",
        _rx(
            r"\b(ignore|disregard|forget|override)\b.{0,30}\b(instructions|rules|guardrails|"
            r"polic(y|ies)|restrictions|prompt)\b|\bsystem prompt\b|\bjailbreak|developer mode|"
            r"\bpretend (you are|to be|you're)\b|\b(bypass|disable|turn off)\b.{0,20}"
            r"\b(guardrails?|filters?|safety|security|access control|checks)\b|"
            r"\bact as (an? )?(admin|administrator|root|super ?user|another user)\b"
        ),
        "This request tries to change the assistant's rules; it was not sent to the model.",
    ),
    Rule(
        "outside-access",
        "refuse",
        _rx(
            r"\b(all|every|each|list( of)?|export|dump|download)\b.{0,20}\bpatients\b|"
            r"\bevery patient\b|\b(other|another|different)\b.{0,12}\b(hospital|tenant|"
            r"organi[sz]ation|clinic|site|patient)'?s?\b|\bpatients?\b.{0,20}\b(at|from|in)\b"
            r".{0,8}\b(other|another)\b"
        ),
        "The assistant answers about the patient in front of you and your own organisation's "
        "documents only.",
    ),
    Rule(
        "self-harm",
        "redirect",
        _rx(
            r"\b(kill|hurt|harm) (myself|himself|herself|themselves)\b|\bsuicid|"
            r"\bend (my|his|her|their) (own )?life\b|\blethal dose\b|\boverdose on\b|"
            r"\bhow many\b.{0,40}\bto (die|overdose)\b"
        ),
        "If someone is at risk, contact the on-call psychiatric service or emergency services "
        "now. The assistant does not answer this.",
    ),
    Rule(
        "harm",
        "refuse",
        _rx(
            r"\b(poison|sedate) (someone|him|her|them|a person)\b|\bwithout (him|her|them) "
            r"knowing\b|\b(make|build|synthesi[sz]e|cook)\b.{0,20}\b(bomb|weapon|meth|fentanyl|"
            r"ricin|nerve agent)\b"
        ),
        "This request could cause harm and is refused.",
    ),
    Rule(
        "record-integrity",
        "refuse",
        _rx(
            r"\b(delete|erase|remove|alter|change|edit|falsify|fake|backdate|rewrite|hide)\b"
            r"(?! in\b).{0,25}"
            r"\b(record|note|notes|result|results|entry|entries|documentation|audit|history|"
            r"chart|allergy|allergies)\b(?!.{0,12}\bsummar)"
        ),
        "The assistant cannot change or remove what the record holds; corrections are made by "
        "a clinician through the chart, with their own audit trail.",
    ),
    Rule(
        "identifiers",
        "refuse",
        _rx(
            r"\b(social security|ssn|passport|driver'?s licen[cs]e|home address|phone number|"
            r"e-?mail address|re-?identify|real name of)\b"
        ),
        "The assistant does not disclose identifiers; they are in the chart's demographics for "
        "those allowed to see them.",
    ),
    Rule(
        "orders",
        "redirect",
        _rx(
            r"\b(prescribe|place (an|the) order|order (a|an|some|the)?\s?(\w+ ){1,3}(for|stat)|"
            r"sign (the|this|my) (order|prescription)|start (him|her|them) on|"
            r"discontinue (his|her|their|the) \w+ now)\b"
        ),
        "The assistant does not place orders. Ask it for a draft: a draft is stored with its "
        "provenance and takes effect only when a clinician signs it.",
    ),
    Rule(
        "diagnosis",
        "redirect",
        _rx(
            r"\b(diagnose (me|him|her|them|this patient|the patient)|(definitive|final|"
            r"confirmed) diagnosis|what (disease|illness|condition) does (he|she|they|the patient)"
            r" (really|actually) have|tell (me|her|him) (they|she|he) (have|has) cancer)\b"
        ),
        "The assistant summarises recorded findings and diagnoses; making a diagnosis is a "
        "clinician's decision.",
    ),
)

DOSE_RULE = Rule(
    "dose-needs-weight",
    "redirect",
    _rx(
        r"\b(calculate|calculation|compute|work out)\b.{0,30}\b(dose|dosing|infusion|rate|"
        r"bolus)\b|\b(mg|mcg|micrograms?|units?|ml)\s?/\s?kg\b|\bper (kg|kilo(gram)?)\b|"
        r"\bweight[- ]based\b|\bloading dose\b|\bwhat dose should\b|\bhow much\b.{0,40}\b"
        r"(give|administer|infuse)\b"
    ),
    "A dose calculation needs a verified body weight (a final body-weight Observation from "
    "the last {days} days), and this record has none. Record a measured weight, or ask "
    "pharmacy.",
)


@dataclass(frozen=True)
class Verdict:
    rule: str
    action: str
    message: str


def check_prompt(text: str, *, verified_weight: bool, weight_days: int = 30) -> Verdict | None:
    """The first rule the prompt breaks (None: it may go on)."""
    for rule in RULES:
        if rule.pattern.search(text):
            return Verdict(rule.id, rule.action, rule.message)
    if DOSE_RULE.pattern.search(text) and not verified_weight:
        return Verdict(DOSE_RULE.id, DOSE_RULE.action, DOSE_RULE.message.format(days=weight_days))
    return None


def is_dose_question(text: str) -> bool:
    return bool(DOSE_RULE.pattern.search(text))
