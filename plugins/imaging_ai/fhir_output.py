"""A model's findings as FHIR R4: a ``Device`` for the model and version, one ``Observation``
per offered finding, a preliminary ``DiagnosticReport`` grouping them and a ``Provenance``
naming the model, its version and the inputs. Everything is written in one transaction, for
the study's tenant."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fhirhub.plugins.imaging_ai.models import Label, ModelCard
from fhirhub.sdk import FhirError, Transaction

#: meta.tag on everything this plugin writes; the report workflow acts on tagged reports only.
TAG_SYSTEM = "urn:fhirhub:imaging-ai"
TAG_FINDING = {"system": TAG_SYSTEM, "code": "finding", "display": "AI finding"}
TAG_REPORT = {"system": TAG_SYSTEM, "code": "report", "display": "AI-assisted report"}
TAG_SUPERSEDED = {
    "system": TAG_SYSTEM,
    "code": "superseded",
    "display": "Superseded by a later analysis of the study",
}
#: Manufacturer (0008,0070) of the DICOM objects the plugin stores back (SEG, SR, GSPS):
#: never an input of a later analysis.
OUTPUT_MANUFACTURER = "fhirhub imaging_ai"
#: Report statuses a new analysis may supersede: not yet signed.
UNSIGNED = ("registered", "partial", "preliminary")
COMPONENT_SYSTEM = "urn:fhirhub:imaging-ai:component"
#: Who decided a finding and when (sub-extensions ``by``: the caller's subject, ``at``: the
#: time), set by the hub when a finding becomes ``final`` or ``cancelled`` (workflow.py).
DECISION_URL = "http://fhirhub.org/fhir/StructureDefinition/imaging-ai-decision"
#: Annotation.authorString of the notes the hub writes itself (a carried-over decision's
#: origin); the signed report's rendering leaves them out of a declined finding's reason.
HUB_NOTE_AUTHOR = "fhirhub imaging_ai"
#: Finding statuses that are a radiologist's decision, carried over on re-analysis.
CARRIED_STATUSES = ("final", "cancelled")
MODEL_IDENTIFIER = "urn:fhirhub:imaging-ai:model"
#: LOINC 18748-4 "Diagnostic imaging study" (the US radiology report's document code).
REPORT_CODE = {
    "system": "http://loinc.org",
    "code": "18748-4",
    "display": "Diagnostic imaging study",
}
RADIOLOGY = {"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD"}
IMAGING = {
    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
    "code": "imaging",
    "display": "Imaging",
}


@dataclass
class Finding:
    label: Label
    probability: float  # 0..1, the highest over the instances analysed
    series_uid: str
    sop_uid: str
    box: tuple[int, int, int, int] | None  # x0, y0, x1, y1 in the instance's pixel columns/rows
    body_site: dict[str, Any] | None = None
    segmentation: tuple[str, int] | None = None  # (SEG SOP Instance UID, segment number)


@dataclass
class Analysis:
    card: ModelCard
    study: dict[str, Any]  # the ImagingStudy as read
    findings: list[Finding]
    series: dict[str, int] = field(default_factory=dict)  # series UID -> instances analysed
    skipped: list[str] = field(default_factory=list)  # instances not usable, with the reason
    images: dict[str, Any] = field(default_factory=dict)  # SOP UID -> dataset, of the findings


def device(card: ModelCard) -> dict[str, Any]:
    return {
        "resourceType": "Device",
        "identifier": [{"system": MODEL_IDENTIFIER, "value": f"{card.id}@{card.version}"}],
        "status": "active",
        "deviceName": [{"name": card.name, "type": "model-name"}],
        "type": {"text": "Image analysis model (software)"},
        "version": [{"value": card.version}],
        "note": [{"text": f"Intended use: {card.intended_use} Licence: {card.licence}"}],
    }


def _component(code: str, display: str, value: str) -> dict[str, Any]:
    return {
        "code": {"coding": [{"system": COMPONENT_SYSTEM, "code": code, "display": display}]},
        "valueString": value,
    }


def observation(
    finding: Finding, study: dict[str, Any], device_ref: str, now: str
) -> dict[str, Any]:
    label = finding.label
    components = [
        _component("series-instance-uid", "Series Instance UID", finding.series_uid),
        _component("sop-instance-uid", "SOP Instance UID", finding.sop_uid),
    ]
    if finding.box is not None:
        components.append(
            _component(
                "bounding-box", "Bounding box x0 y0 x1 y1 (pixels)", " ".join(map(str, finding.box))
            )
        )
    if finding.segmentation is not None:
        seg_uid, segment = finding.segmentation
        components.append(
            _component(
                "segmentation",
                "DICOM Segmentation (SOP Instance UID, segment)",
                f"{seg_uid} {segment}",
            )
        )
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "meta": {"tag": [TAG_FINDING]},
        "status": "preliminary",
        "category": [{"coding": [IMAGING]}],
        "code": {"coding": [label.code], "text": label.display},
        "effectiveDateTime": now,
        "issued": now,
        "valueQuantity": {
            "value": round(finding.probability * 100, 1),
            "unit": "%",
            "system": "http://unitsofmeasure.org",
            "code": "%",
        },
        "device": {"reference": device_ref},
        "derivedFrom": [{"reference": f"ImagingStudy/{study['id']}"}],
        "component": components,
    }
    if "subject" in study:
        resource["subject"] = study["subject"]
    if finding.body_site:
        resource["bodySite"] = finding.body_site
    return resource


def report(study: dict[str, Any], results: list[str], now: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "meta": {"tag": [TAG_REPORT]},
        "status": "preliminary",
        "category": [{"coding": [RADIOLOGY]}],
        "code": {"coding": [REPORT_CODE], "text": study.get("description") or "Imaging report"},
        "issued": now,
        "imagingStudy": [{"reference": f"ImagingStudy/{study['id']}"}],
        "result": [{"reference": r} for r in results],
    }
    if "subject" in study:
        resource["subject"] = study["subject"]
    if study.get("started"):
        resource["effectiveDateTime"] = study["started"]
    if study.get("basedOn"):
        resource["basedOn"] = study["basedOn"]
    return resource


def provenance(
    analysis: Analysis,
    targets: list[str],
    device_ref: str,
    now: str,
    revises: list[str] | None = None,
    carried: list[tuple[str, Decision]] | None = None,
) -> dict[str, Any]:
    """``carried``: (new finding reference, the decision it took over)."""
    card, study = analysis.card, analysis.study
    entities: list[dict[str, Any]] = [
        {"role": "revision", "what": {"reference": f"DiagnosticReport/{old}"}}
        for old in revises or []
    ]
    entities += [
        {
            "role": "source",
            "what": {
                "reference": decision.finding,
                "display": f"decision ({decision.status}) carried over to {new}",
            },
        }
        for new, decision in carried or []
    ]
    entities += [
        {
            "role": "source",
            "what": {
                "reference": f"ImagingStudy/{study['id']}",
                "display": f"series {uid}: {count} instance(s) analysed",
            },
        }
        for uid, count in analysis.series.items()
    ]
    return {
        "resourceType": "Provenance",
        "target": [{"reference": t} for t in targets],
        "recorded": now,
        "activity": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                    "code": "CREATE",
                }
            ],
            "text": f"Image analysis by {card.name} {card.version}",
        },
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "performer",
                        }
                    ]
                },
                "who": {"reference": device_ref, "display": f"{card.id} {card.version}"},
            }
        ],
        "entity": entities,
    }


@dataclass
class Decision:
    """A radiologist's decision on a finding of a report about to be superseded."""

    finding: str  # Observation/<id>/_history/<version>: the decided version
    report: str  # the superseded DiagnosticReport's id
    region: tuple[str, str | None, str | None]  # code, SOP Instance UID, box (None: no region)
    status: str  # final or cancelled
    note: list[dict[str, Any]]
    stamp: dict[str, Any] | None  # the DECISION_URL extension: who decided, when


def _region(finding: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """What identifies a finding across analyses: its code, and its image and box when it
    has a region (a finding without one is identified by its code)."""
    coding = (finding.get("code", {}).get("coding") or [{}])[0]
    code = f"{coding.get('system', '')}|{coding.get('code', '')}"
    parts = {
        c["code"]["coding"][0]["code"]: c.get("valueString")
        for c in finding.get("component", [])
        if c.get("code", {}).get("coding")
    }
    box = parts.get("bounding-box")
    return code, (parts.get("sop-instance-uid") if box else None), box


def _unsigned_reports(
    tx: Transaction, report_ids: list[str]
) -> Iterator[tuple[str, dict[str, Any], list[tuple[str, dict[str, Any]]]]]:
    """Each report of ``report_ids`` that still exists and is not signed, with its findings
    (``Type/id`` and the resource) that still exist."""
    for report_id in report_ids:
        try:
            old = tx.read("DiagnosticReport", report_id)
        except FhirError:
            continue  # deleted since
        if old.get("status") not in UNSIGNED:
            continue
        findings = []
        for entry in old.get("result", []):
            kind, _, ident = str(entry.get("reference", "")).partition("/")
            try:
                findings.append((f"{kind}/{ident}", tx.read(kind, ident)))
            except FhirError:
                continue
        yield report_id, old, findings


def decisions(tx: Transaction, report_ids: list[str]) -> list[Decision]:
    """The decided findings (``final``, ``cancelled``) of the unsigned reports among
    ``report_ids``: read before :func:`supersede` withdraws them."""
    found = []
    for report_id, _old, findings in _unsigned_reports(tx, report_ids):
        for reference, finding in findings:
            if finding.get("status") not in CARRIED_STATUSES:
                continue
            stamp = next(
                (e for e in finding.get("extension", []) if e.get("url") == DECISION_URL), None
            )
            found.append(
                Decision(
                    finding=f"{reference}/_history/{finding['meta']['versionId']}",
                    report=report_id,
                    region=_region(finding),
                    status=finding["status"],
                    note=list(finding.get("note", [])),
                    stamp=stamp,
                )
            )
    return found


def carry_over(resource: dict[str, Any], carried: list[Decision]) -> Decision | None:
    """Give a new finding the decision on the same finding of a superseded report (same
    code, image and box; the same code when neither has a region), with its notes (a
    decline's reason) and who decided, plus a note saying where the decision came from.
    The decision used is removed from ``carried``; None when none matches."""
    region = _region(resource)
    decision = next((d for d in carried if d.region == region), None)
    if decision is None:
        return None
    carried.remove(decision)
    resource["status"] = decision.status
    verb = "Approved" if decision.status == "final" else "Declined"
    parts = {e.get("url"): e for e in (decision.stamp or {}).get("extension", [])}
    by = parts.get("by", {}).get("valueString")
    at = parts.get("at", {}).get("valueDateTime")
    who = f" by {by}" if by else ""
    when = f" on {at}" if at else ""
    finding = decision.finding.split("/_history/")[0]
    resource["note"] = [
        *decision.note,
        {
            "authorString": HUB_NOTE_AUTHOR,
            "text": f"{verb}{who}{when} in DiagnosticReport/{decision.report} ({finding}), "
            "which a later analysis of the study superseded; the decision was carried over.",
        },
    ]
    if decision.stamp is not None:
        resource["extension"] = [decision.stamp]
    return decision


def supersede(tx: Transaction, report_ids: list[str]) -> list[str]:
    """Withdraw the earlier analyses' reports that are not signed: each such report and its
    findings become ``entered-in-error`` (the report tagged ``superseded``), so the study has
    one current preliminary report. A signed report (``final``, ``amended``...) and its
    findings are never changed. Returns the ids of the reports withdrawn."""
    withdrawn = []
    for report_id, old, findings in _unsigned_reports(tx, report_ids):
        for _reference, finding in findings:
            if finding.get("status") != "entered-in-error":
                finding["status"] = "entered-in-error"
                tx.update(finding)
        old["status"] = "entered-in-error"
        tags = old.setdefault("meta", {}).setdefault("tag", [])
        if TAG_SUPERSEDED not in tags:
            tags.append(TAG_SUPERSEDED)
        tx.update(old)
        withdrawn.append(report_id)
    return withdrawn


def write_analysis(
    tx: Transaction,
    analysis: Analysis,
    offered: list[Finding],
    now: str,
    revises: list[str] | None = None,
    decided: list[Decision] | None = None,
) -> str:
    """Write Device (conditional create), Observations, the preliminary report and its
    Provenance (naming the reports it ``revises`` as revision entities); return the
    DiagnosticReport id. A finding matching one of the ``decided`` findings of the
    superseded reports takes over its decision (:func:`carry_over`); the Provenance names
    the decided version as a source."""
    card = analysis.card
    dev = tx.create(
        device(card), if_none_exist=f"identifier={MODEL_IDENTIFIER}|{card.id}@{card.version}"
    )
    device_ref = f"Device/{dev.version.resource_id}"
    results = []
    remaining = list(decided or [])
    carried: list[tuple[str, Decision]] = []
    for finding in offered:
        resource = observation(finding, analysis.study, device_ref, now)
        decision = carry_over(resource, remaining)
        written = tx.create(resource)
        results.append(f"Observation/{written.version.resource_id}")
        if decision is not None:
            carried.append((results[-1], decision))
    written_report = tx.create(report(analysis.study, results, now))
    report_ref = f"DiagnosticReport/{written_report.version.resource_id}"
    tx.create(provenance(analysis, [report_ref, *results], device_ref, now, revises, carried))
    return written_report.version.resource_id
