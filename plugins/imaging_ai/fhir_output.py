"""A model's findings as FHIR R4: a ``Device`` for the model and version, one ``Observation``
per offered finding, a preliminary ``DiagnosticReport`` grouping them and a ``Provenance``
naming the model, its version and the inputs. Everything is written in one transaction, for
the study's tenant."""

from __future__ import annotations

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
) -> dict[str, Any]:
    card, study = analysis.card, analysis.study
    entities: list[dict[str, Any]] = [
        {"role": "revision", "what": {"reference": f"DiagnosticReport/{old}"}}
        for old in revises or []
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


def supersede(tx: Transaction, report_ids: list[str]) -> list[str]:
    """Withdraw the earlier analyses' reports that are not signed: each such report and its
    findings become ``entered-in-error`` (the report tagged ``superseded``), so the study has
    one current preliminary report. A signed report (``final``, ``amended``...) and its
    findings are never changed. Returns the ids of the reports withdrawn."""
    withdrawn = []
    for report_id in report_ids:
        try:
            old = tx.read("DiagnosticReport", report_id)
        except FhirError:
            continue  # deleted since
        if old.get("status") not in UNSIGNED:
            continue
        for entry in old.get("result", []):
            kind, _, ident = str(entry.get("reference", "")).partition("/")
            try:
                finding = tx.read(kind, ident)
            except FhirError:
                continue
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
) -> str:
    """Write Device (conditional create), Observations, the preliminary report and its
    Provenance (naming the reports it ``revises`` as revision entities); return the
    DiagnosticReport id."""
    card = analysis.card
    dev = tx.create(
        device(card), if_none_exist=f"identifier={MODEL_IDENTIFIER}|{card.id}@{card.version}"
    )
    device_ref = f"Device/{dev.version.resource_id}"
    results = []
    for finding in offered:
        written = tx.create(observation(finding, analysis.study, device_ref, now))
        results.append(f"Observation/{written.version.resource_id}")
    written_report = tx.create(report(analysis.study, results, now))
    report_ref = f"DiagnosticReport/{written_report.version.resource_id}"
    tx.create(provenance(analysis, [report_ref, *results], device_ref, now, revises))
    return written_report.version.resource_id
