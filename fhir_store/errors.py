"""FHIR errors: every failure a client can see is an ``OperationOutcome`` with an HTTP status.

Raised anywhere below the HTTP layer (store, search, validation, interactions, plugins); the
HTTP layer turns it into a response, the MLLP and DICOM adapters into a NAK or a failure status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True)
class Issue:
    """One ``OperationOutcome.issue`` (http://hl7.org/fhir/R4/operationoutcome.html)."""

    severity: str  # fatal | error | warning | information
    code: str  # IssueType: invalid, structure, required, value, not-found, conflict, ...
    diagnostics: str
    expression: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


@dataclass
class FhirError(Exception):
    """An error with its HTTP status and the issues that explain it."""

    status: int
    issues: list[Issue] = field(default_factory=list)
    #: Set while processing a Bundle: the index of the entry that failed.
    entry_index: int | None = None

    def __init__(
        self,
        status: int,
        diagnostics: str | None = None,
        *,
        code: str = "processing",
        expression: tuple[str, ...] = (),
        issues: list[Issue] | None = None,
    ) -> None:
        self.status = status
        self.issues = list(issues or [])
        if diagnostics is not None:
            self.issues.insert(0, Issue("error", code, diagnostics, expression))
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return "; ".join(i.diagnostics for i in self.issues) or f"HTTP {self.status}"

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)

    def outcome_bytes(self) -> bytes:
        return orjson.dumps(self.outcome())


def invalid(diagnostics: str, *, expression: tuple[str, ...] = (), status: int = 400) -> FhirError:
    return FhirError(status, diagnostics, code="invalid", expression=expression)


def not_found(diagnostics: str) -> FhirError:
    return FhirError(404, diagnostics, code="not-found")


def gone(diagnostics: str) -> FhirError:
    return FhirError(410, diagnostics, code="deleted")


def conflict(diagnostics: str, *, status: int = 409) -> FhirError:
    return FhirError(status, diagnostics, code="conflict")


def not_supported(diagnostics: str, *, status: int = 400) -> FhirError:
    return FhirError(status, diagnostics, code="not-supported")
