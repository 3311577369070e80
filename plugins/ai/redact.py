"""Identifiers stripped from everything sent to an external model.

What is removed: the conversation patient's names, identifiers, telecoms, address parts and
birth date (taken from the Patient resource), and anything shaped like a social security
number, an e-mail address or a phone number. Resource ids stay: the model needs them to call
tools, and they mean nothing outside the hub.
"""

from __future__ import annotations

import re
from typing import Any

_PATTERNS = (
    (re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), "[ID]"),
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "[EMAIL]"),
    (re.compile(r"(?<!\d)(\+?\d{1,2}[\s.-])?\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}(?!\d)"), "[PHONE]"),
)


class Redactor:
    """Replaces one patient's identifying strings (and generic patterns) with placeholders."""

    def __init__(self, patient: dict[str, Any] | None = None) -> None:
        terms: dict[str, str] = {}
        if patient:
            for name in patient.get("name") or []:
                for part in [*(name.get("given") or []), name.get("family")]:
                    if part and len(str(part)) > 1:
                        terms[str(part)] = "[NAME]"
            for identifier in patient.get("identifier") or []:
                if identifier.get("value"):
                    terms[str(identifier["value"])] = "[ID]"
            for telecom in patient.get("telecom") or []:
                if telecom.get("value"):
                    terms[str(telecom["value"])] = "[CONTACT]"
            for address in patient.get("address") or []:
                for part in [*(address.get("line") or []), address.get("postalCode")]:
                    if part:
                        terms[str(part)] = "[ADDRESS]"
            if patient.get("birthDate"):
                terms[str(patient["birthDate"])] = "[BIRTHDATE]"
        ordered = sorted(terms, key=len, reverse=True)
        self._terms = terms
        self._pattern = (
            re.compile("|".join(rf"\b{re.escape(t)}\b" for t in ordered), re.IGNORECASE)
            if ordered
            else None
        )

    def text(self, text: str) -> str:
        if self._pattern is not None:
            lowered = {k.lower(): v for k, v in self._terms.items()}
            text = self._pattern.sub(lambda m: lowered.get(m.group(0).lower(), "[REDACTED]"), text)
        for pattern, placeholder in _PATTERNS:
            text = pattern.sub(placeholder, text)
        return text

    def _call(self, call: dict[str, Any]) -> dict[str, Any]:
        function = dict(call.get("function") or {})
        if isinstance(function.get("arguments"), str):
            function["arguments"] = self.text(function["arguments"])
        return {**call, "function": function}

    def messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        redacted = []
        for message in messages:
            copy = dict(message)
            if isinstance(copy.get("content"), str):
                copy["content"] = self.text(copy["content"])
            if copy.get("tool_calls"):
                copy["tool_calls"] = [self._call(call) for call in copy["tool_calls"]]
            redacted.append(copy)
        return redacted
