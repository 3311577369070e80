"""Guardrails after the model: each sentence of an answer is checked against the record.

* a medicine the patient "takes" must be an active MedicationRequest/MedicationStatement;
* a quoted laboratory or vital-sign value must be one the record holds (to the precision
  quoted);
* a diagnosis stated as fact ("she has lupus") that is not an active Condition is rewritten
  as a possibility for a clinician to assess.

Deterministic string rules (no model judges a model); a sentence that fails is kept, marked,
and listed in the answer's findings, so the reader sees both the claim and the doubt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .facts import RecordFacts
from .router import lab_named
from .vocabulary import LAB_CODES

AI_LABEL = "AI-generated: check it against the cited sources before acting on it."
_DRUGS_FILE = Path(__file__).resolve().parent / "data" / "drug_names.txt"
_TAKES = re.compile(
    r"\b(takes?|taking|is on|are on|on|prescribed|receiv(es|ing)|uses?|using|started)\b", re.I
)
_NOT_CURRENT = re.compile(
    r"\b(stopped|discontinued|previous(ly)?|formerly|history of|no longer|not (on|taking)|"
    r"was taking|used to|ceased|allerg\w*)\b",
    re.I,
)
_NUMBER = re.compile(r"(?<![\d-])(\d+(?:\.\d+)?)(?![\d-])")
_DATE = re.compile(r"\d{4}-\d{2}(-\d{2})?")
_DIAGNOSIS = re.compile(
    r"\b(the patient|he|she|they|you)\s+(definitely |certainly |clearly )?(has|have|is "
    r"suffering from|suffers from|(has been |is )?diagnosed with)\s+(?P<what>[a-z][a-z0-9 '\-]{2,60})",
    re.I,
)
_SOFT = re.compile(r"\b(may|might|possibl|could|record(ed|s)?|history of|consider)\w*", re.I)


@dataclass(frozen=True)
class Finding:
    rule: str
    sentence: str
    detail: str

    def as_json(self) -> dict[str, str]:
        return {"rule": self.rule, "sentence": self.sentence, "detail": self.detail}


def _drug_names() -> frozenset[str]:
    return frozenset(
        line.strip().lower()
        for line in _DRUGS_FILE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )


DRUG_NAMES = _drug_names()


def split_sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z(\[])", text.strip()) if s]


def _drugs_in(sentence: str, facts: RecordFacts) -> set[str]:
    words = set(re.findall(r"[a-z][a-z\-]+", sentence.lower()))
    known = set(DRUG_NAMES)
    for name in facts.all_medications:
        known.update(w for w in re.findall(r"[a-z][a-z\-]+", name) if len(w) > 5)
    return {w for w in words if w in known}


def _quoted_values(sentence: str) -> list[str]:
    cleaned = _DATE.sub(" ", sentence)
    return _NUMBER.findall(cleaned)


def _matches(quoted: str, values: list[float]) -> bool:
    decimals = len(quoted.split(".")[1]) if "." in quoted else 0
    tolerance = 0.5 * 10**-decimals + 1e-9
    return any(abs(float(quoted) - v) <= tolerance for v in values)


def check_sentence(sentence: str, facts: RecordFacts | None) -> tuple[str, list[Finding]]:
    """The sentence as it may be shown, and what was found wrong with it."""
    findings: list[Finding] = []
    if facts is not None:
        if _TAKES.search(sentence) and not _NOT_CURRENT.search(sentence):
            for drug in sorted(_drugs_in(sentence, facts)):
                if not any(drug in name for name in facts.active_medications):
                    findings.append(
                        Finding(
                            "medication-not-active",
                            sentence,
                            f"no active MedicationRequest or MedicationStatement for {drug}",
                        )
                    )
        lab = lab_named(sentence.lower())
        if lab is not None:
            recorded = [v for code in LAB_CODES[lab] for v in facts.values.get(code, [])]
            for quoted in _quoted_values(sentence):
                if not _matches(quoted, recorded):
                    findings.append(
                        Finding("value-not-in-record", sentence, f"no {lab} of {quoted} recorded")
                    )
    claim = _DIAGNOSIS.search(sentence)
    if claim and not _SOFT.search(sentence):
        what = claim["what"].strip().rstrip(".").lower()
        on_record = facts is not None and any(
            what in c or c in what for c in facts.active_conditions if c
        )
        if not on_record:
            findings.append(
                Finding("diagnosis-as-fact", sentence, f"'{what}' is not an active Condition")
            )
            sentence = (
                f"The record does not confirm {what}; it is a possibility for a clinician to "
                "assess."
            )
    if findings and findings[-1].rule != "diagnosis-as-fact":
        sentence = f"{sentence} [unverified: {'; '.join(f.detail for f in findings)}]"
    return sentence, findings


def check_answer(text: str, facts: RecordFacts | None) -> tuple[str, list[Finding]]:
    shown: list[str] = []
    findings: list[Finding] = []
    for sentence in split_sentences(text):
        checked, found = check_sentence(sentence, facts)
        shown.append(checked)
        findings.extend(found)
    return " ".join(shown), findings
