"""Decision support on every MedicationRequest write, whatever wrote it (REST, an HL7 order,
an OSCAR sync, a plugin): a ``before_commit`` hook, inside the writer's transaction.

Why inside the transaction rather than a consumer: a refusal (``block_severity``) must stop the
write itself, and the DetectedIssues then commit atomically with the order they are about. The
patient's record is read through the same transaction (it sees the unit's own writes: a
transaction Bundle with a Condition and an order is checked against that Condition), acting
as the system for the order's tenant, so a client without Condition scopes is still checked
and never sees more than the outcome. ``tx.written`` flushes the unit's writes first, which
takes the writer's lock (SQLite's single writer, PostgreSQL's log lock): the reads that follow
see every order committed before, so concurrent interacting orders cannot both pass unseen.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson

from fhirhub.plugins.knowledge.checks import Finding, at_least, check_order, order_edges
from fhirhub.plugins.knowledge.context import ACTIVE_ORDER, order_item, read_context_at_once
from fhirhub.plugins.knowledge.graph import scope_for
from fhirhub.plugins.knowledge.service import KnowledgeService
from fhirhub.plugins.knowledge.vocabulary import (
    CHECK_SYSTEM,
    ISSUE_IDENTIFIER,
    OVERRIDE_EXTENSION,
)
from fhirhub.sdk import FhirError, Issue, Transaction, acting_as, format_instant, system_for

CHECK_DISPLAY = {
    "drug-interaction": "Drug-drug interaction",
    "drug-condition": "Drug contraindicated by a condition",
    "drug-allergy": "Drug contraindicated by an allergy",
}
#: Resources of the patient's record read in one query before falling back to one per type.
CONTEXT_PAGE = 1000
#: HL7 v3 ActCode for the drug-drug kind, which DetectedIssue's example binding offers.
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def override_reason(resource: dict[str, Any]) -> str:
    for extension in resource.get("extension") or ():
        if isinstance(extension, dict) and extension.get("url") == OVERRIDE_EXTENSION:
            return str(extension.get("valueString") or "").strip()
    return ""


def check_written_orders(service: KnowledgeService, tx: Transaction) -> None:
    """The hook's body: check each active MedicationRequest this unit wrote."""
    if not service.settings.check_orders:
        return
    orders = [
        v
        for v in tx.written
        if v.resource_type == "MedicationRequest" and not v.deleted and v.content is not None
    ]
    if not orders:
        return
    graph = service.index.graph()
    if not len(graph):
        return
    # The whole record in one page, or (a full page) the type-by-type reads.
    page = min(CONTEXT_PAGE, service.hub.settings.max_page_size)
    for version in orders:
        resource = orjson.loads(version.content)  # type: ignore[arg-type]
        patient = str((resource.get("subject") or {}).get("reference", ""))
        if resource.get("status") not in ACTIVE_ORDER or not patient.startswith("Patient/"):
            continue
        with acting_as(system_for(version.tenant)):
            order = order_item(graph, resource, version.reference, tx.read)
            scope = scope_for(version.tenant or "")
            edges = order_edges(graph, scope, order)
            if not edges:  # an unknown drug, or one with nothing to check: no reads at all
                continue
            context = read_context_at_once(
                graph,
                patient,
                tx.search,
                tx.read,
                medications=bool(edges.interacting),
                conditions=bool(edges.contraindicating),
                page=page,
            )
            findings = check_order(graph, scope, order, context, edges)
            if not findings:
                continue
            reason = override_reason(resource)
            blocking = service.settings.block_severity
            if blocking and not reason and (refused := at_least(findings, blocking)):
                raise refusal(refused, blocking)
            for finding in findings:
                issue = detected_issue(finding, version.reference, patient, reason)
                if version.version_id == 1:  # a new order: no issue about it can exist yet
                    tx.create(issue)
                else:
                    key = issue_key(finding, version.reference)
                    tx.create(issue, if_none_exist=f"identifier={ISSUE_IDENTIFIER}|{key}")


def issue_key(finding: Finding, order_reference: str) -> str:
    return hashlib.sha1(finding.key(order_reference).encode()).hexdigest()


def refusal(findings: list[Finding], blocking: str) -> FhirError:
    issues = [
        Issue(
            "error",
            "business-rule",
            f"{f.severity} {CHECK_DISPLAY[f.check].lower()}: {f.summary}. {f.detail} "
            f"(source: {f.edge.origin}; {f.edge.evidence}; {f.edge.reference})",
        )
        for f in findings
    ]
    issues.append(
        Issue(
            "information",
            "business-rule",
            f"Orders with {blocking}-severity findings are refused unless they carry an "
            f"override reason in the extension {OVERRIDE_EXTENSION}",
        )
    )
    return FhirError(422, issues=issues)


def detected_issue(
    finding: Finding, order_reference: str, patient: str, override: str = ""
) -> dict[str, Any]:
    """The DetectedIssue recording one finding about one order."""
    now = format_instant(int(time.time() * 1_000_000))
    coding = [
        {"system": CHECK_SYSTEM, "code": finding.check, "display": CHECK_DISPLAY[finding.check]}
    ]
    if finding.check == "drug-interaction":
        coding.append({"system": V3_ACT_CODE, "code": "DRG", "display": "Drug Interaction Alert"})
    edge = finding.edge
    detail = f"{finding.summary}. {finding.detail}".strip()
    if edge.management:
        detail += f" Recommendation: {edge.management}"
    issue: dict[str, Any] = {
        "resourceType": "DetectedIssue",
        "identifier": [{"system": ISSUE_IDENTIFIER, "value": issue_key(finding, order_reference)}],
        "status": "final",
        "code": {"coding": coding, "text": CHECK_DISPLAY[finding.check]},
        "severity": finding.severity,
        "patient": {"reference": patient},
        "identifiedDateTime": now,
        "implicated": [{"reference": ref} for ref in finding.implicated],
        "evidence": [
            {
                "detail": [
                    {"display": f"{edge.reference}: {edge.origin}; {edge.evidence}".strip("; ")}
                ]
            }
        ],
        "detail": detail,
    }
    if override:
        issue["mitigation"] = [
            {
                "action": {"text": f"Ordered despite the warning; reason given: {override}"},
                "date": now,
            }
        ]
    return issue
