"""One study through the models: select the series the routes give each model, read the
pixels through the SDK (``dicom_instances``/``read_dicom_instance``, the study's tenant's
visibility), predict, and write the findings and the preliminary report.

Bad input never crashes a run: an instance without pixel data (a structured report, a
presentation state), a pixel stream that does not decode, or a series the model's card does
not fit is recorded, and a run with nothing usable ends ``failed`` with the reasons.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from fhirhub.plugins.imaging_ai.fhir_output import (
    OUTPUT_MANUFACTURER,
    Analysis,
    Finding,
    decisions,
    supersede,
    write_analysis,
)
from fhirhub.plugins.imaging_ai.models import ModelError, OnnxModel
from fhirhub.plugins.imaging_ai.pixels import UnusableImage, model_input
from fhirhub.plugins.imaging_ai.runs import run_store
from fhirhub.plugins.imaging_ai.settings import ImagingAiSettings, Route
from fhirhub.sdk import (
    DicomInstanceRef,
    FhirError,
    Hub,
    acting_as,
    dicom_instances,
    format_instant,
    read,
    read_dicom_instance,
    store_dicom_instance,
    system_for,
    transaction,
)

log = logging.getLogger("fhirhub.imaging_ai")

#: SOP classes without pixels for a model (Segmentation, the SR classes, Grayscale Softcopy
#: Presentation State): their arrival never starts a re-analysis (the plugin stores such
#: objects back itself).
DERIVED_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
        "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
        "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
        "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
        "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
        "1.2.840.10008.5.1.4.1.1.11.1",  # Grayscale Softcopy Presentation State
    }
)


@dataclass
class SeriesInput:
    uid: str
    modality: str
    body_part: str | None
    aet: str | None
    body_site: dict[str, Any] | None
    instances: list[tuple[DicomInstanceRef, Dataset]]
    #: The C-STORE associations' AE titles its instances came by (empty: STOW-RS, upload).
    calling_aets: set[str] = field(default_factory=set)
    called_aets: set[str] = field(default_factory=set)


def study_uid_of(study: dict[str, Any]) -> str | None:
    for identifier in study.get("identifier", []):
        value = str(identifier.get("value", ""))
        if identifier.get("system") == "urn:dicom:uid" and value.startswith("urn:oid:"):
            return value.removeprefix("urn:oid:")
    return None


def input_fingerprint(refs: list[DicomInstanceRef]) -> str:
    """What a study's analysis depends on: its instances but the derived objects."""
    uids = sorted(r.sop_uid for r in refs if r.sop_class_uid not in DERIVED_CLASSES)
    return hashlib.sha256("\n".join(uids).encode()).hexdigest()


def _read_series(
    hub: Hub, study: dict[str, Any], refs: list[DicomInstanceRef]
) -> list[SeriesInput]:
    """The study's series as the archive holds them, each instance parsed once; the
    plugin's own objects stored back (SEG, SR, GSPS) are left out."""
    sites = {
        s.get("uid"): s.get("bodySite")
        for s in study.get("series", [])
        if isinstance(s.get("bodySite"), dict)
    }
    series: dict[str, SeriesInput] = {}
    for ref in refs:
        data = read_dicom_instance(hub, ref)
        ds = pydicom.dcmread(io.BytesIO(data))
        if ds.get("Manufacturer") == OUTPUT_MANUFACTURER:
            continue
        item = series.get(ref.series_uid)
        if item is None:
            meta = getattr(ds, "file_meta", None)
            aet = str(getattr(meta, "SourceApplicationEntityTitle", "") or "").strip() or None
            site = sites.get(ref.series_uid)
            item = series[ref.series_uid] = SeriesInput(
                uid=ref.series_uid,
                modality=str(ds.get("Modality", "")).upper(),
                body_part=str(ds.get("BodyPartExamined", "") or "").upper() or None,
                aet=aet,
                body_site={"coding": [site]} if site else None,
                instances=[],
            )
        item.instances.append((ref, ds))
        if ref.calling_aet:
            item.calling_aets.add(ref.calling_aet)
        if ref.called_aet:
            item.called_aets.add(ref.called_aet)
    return list(series.values())


def _selected(route: Route, series: SeriesInput, tenant: str) -> bool:
    if route.tenants and tenant not in route.tenants:
        return False
    if route.modalities and series.modality not in {m.upper() for m in route.modalities}:
        return False
    if route.body_parts and (series.body_part or "") not in {b.upper() for b in route.body_parts}:
        return False
    if route.aets and (series.aet or "") not in route.aets:
        return False
    if route.calling_aets and not series.calling_aets & set(route.calling_aets):
        return False
    if route.called_aets and not series.called_aets & set(route.called_aets):
        return False
    return True


def plan(
    model: OnnxModel, routes: list[Route], series: list[SeriesInput], tenant: str
) -> tuple[list[SeriesInput], list[str]]:
    """The series ``model`` runs on, and the reasons for series a route named it for but its
    card does not fit. Nothing selected and no reason: the model does not run on the study."""
    card = model.card
    chosen: list[SeriesInput] = []
    refused: list[str] = []
    for item in series:
        for route in routes:
            if route.model not in ("*", card.id) or not _selected(route, item, tenant):
                continue
            if card.fits(item.modality, item.body_part):
                chosen.append(item)
            elif route.model == card.id:
                refused.append(
                    f"series {item.uid}: modality {item.modality or '?'} / body part "
                    f"{item.body_part or '?'} is not supported by {card.id} "
                    f"(modalities {', '.join(card.modalities) or 'any'}; body parts "
                    f"{', '.join(card.body_parts) or 'any'})"
                )
            break
    return chosen, refused


def _box(
    centre: tuple[float, float] | None, radius: float, ds: Dataset
) -> tuple[int, int, int, int] | None:
    if centre is None:
        return None
    rows, columns = int(ds.Rows), int(ds.Columns)
    cy, cx = centre[0] * rows, centre[1] * columns
    ry, rx = radius * rows, radius * columns
    return (
        max(0, int(cx - rx)),
        max(0, int(cy - ry)),
        min(columns - 1, int(cx + rx)),
        min(rows - 1, int(cy + ry)),
    )


def run_model(
    model: OnnxModel, study: dict[str, Any], chosen: list[SeriesInput]
) -> tuple[Analysis, float]:
    """Predict every usable instance of the chosen series; a finding per label at its highest
    probability over the study. Raises :class:`UnusableImage` when nothing is usable."""
    card = model.card
    analysis = Analysis(card, study, [])
    images: list[np.ndarray] = []
    sources: list[tuple[SeriesInput, DicomInstanceRef, Dataset]] = []
    for item in chosen:
        for ref, ds in item.instances:
            try:
                images.append(model_input(ds, card.height, card.width, card.window))
            except UnusableImage as exc:
                analysis.skipped.append(f"instance {ref.sop_uid}: {exc}")
                continue
            sources.append((item, ref, ds))
            analysis.series[item.uid] = analysis.series.get(item.uid, 0) + 1
    if not images:
        raise UnusableImage("; ".join(analysis.skipped) or "no image instances to analyse")
    started = time.perf_counter()
    predictions = []
    for start in range(0, len(images), 32):
        predictions += model.predict(np.stack(images[start : start + 32]))
    seconds = time.perf_counter() - started
    for j, label in enumerate(card.labels):
        best = max(range(len(predictions)), key=lambda i: predictions[i].probabilities[j])
        item, ref, ds = sources[best]
        prediction = predictions[best]
        analysis.findings.append(
            Finding(
                label=label,
                probability=prediction.probabilities[j],
                series_uid=item.uid,
                sop_uid=ref.sop_uid,
                box=_box(prediction.centres[j], label.region_radius, ds),
                body_site=item.body_site,
            )
        )
        analysis.images[ref.sop_uid] = ds
    return analysis, seconds


def store_overlays(hub: Hub, analysis: Analysis, offered: list[Finding]) -> list[str]:
    """Store a DICOM SEG per image with offered regions, one SR measurement report and one
    GSPS of them (as the caller: the system for the study's tenant); each finding learns its SEG and
    segment. Returns the problems."""
    from fhirhub.plugins.imaging_ai.overlays import (
        measurement_report,
        presentation_state,
        segmentations,
    )

    problems = []
    for seg_uid, data, group in segmentations(analysis.card, analysis.images, offered):
        try:
            store_dicom_instance(hub, data)
        except FhirError as exc:
            problems.append(f"segmentation {seg_uid} not stored: {exc}")
            continue
        for number, finding in enumerate(group, start=1):
            finding.segmentation = (seg_uid, number)
    for what, make in (
        ("measurement report", measurement_report),
        ("presentation state", presentation_state),
    ):
        try:
            made = make(analysis.card, analysis.images, offered)
        except Exception as exc:  # highdicom's checks on an unusual source image
            log.warning("No %s: %s", what, exc)
            return [*problems, f"{what} not made: {exc}"]
        if made is not None:
            try:
                store_dicom_instance(hub, made[1])
            except FhirError as exc:
                problems.append(f"{what} {made[0]} not stored: {exc}")
    return problems


def analyse_study(
    hub: Hub,
    models: dict[str, OnnxModel],
    settings: ImagingAiSettings,
    tenant: str,
    study_id: str,
) -> list[str]:
    """Run every routed model on one study, as the system for the study's tenant; returns
    the run ids. Each run ends ``done`` (with its report) or ``failed`` (with the reason).

    A study analysed before is analysed again only when its instances changed (new ones
    arrived after the run): the model's earlier report is then superseded when unsigned
    (:func:`supersede`), left as it is when signed, and a new preliminary report written;
    its findings that match a decided finding of the superseded report take over that
    decision (:func:`carry_over`)."""
    store = run_store(hub)
    run_ids: list[str] = []
    with acting_as(system_for(tenant or None)):
        try:
            study = read(hub, "ImagingStudy", study_id)
        except FhirError as exc:
            log.warning("ImagingStudy/%s is gone (%s); not analysed", study_id, exc)
            return []
        study_uid = study_uid_of(study) or ""
        fingerprint = None
        try:
            refs = dicom_instances(hub, study_uid) if study_uid else []
            fingerprint = input_fingerprint(refs)
            if store.analysed_inputs(tenant, study_id) == fingerprint:
                log.info("ImagingStudy/%s: no new instance since its analysis", study_id)
                return []
            series = _read_series(hub, study, refs) if study_uid else []
            problem = None if study_uid else "the ImagingStudy has no Study Instance UID"
        except Exception as exc:  # an unreadable file is a failed run, never a crash
            series, problem = [], f"the study's instances cannot be read: {exc}"
        earlier = store.list(tenant, study_id=study_id)
        for model in models.values():
            card = model.card
            chosen, refused = plan(model, list(settings.routes), series, tenant)
            if problem is None and not chosen and not refused:
                continue
            previous = [
                r.report for r in earlier if r.model == card.id and r.status == "done" and r.report
            ]
            run_id = store.start(tenant, study_id, study_uid, card.id, card.version)
            run_ids.append(run_id)
            if problem or not chosen:
                store.finish(run_id, "failed", reason=problem or "; ".join(refused))
                continue
            try:
                analysis, seconds = run_model(model, study, chosen)
                offered = [
                    f for f in analysis.findings if f.probability >= settings.offer_threshold
                ]
                if settings.overlays:
                    analysis.skipped += store_overlays(hub, analysis, offered)
                now = format_instant(int(time.time() * 1_000_000))
                with transaction(hub) as tx:
                    decided = decisions(tx, previous)
                    revises = supersede(tx, previous)
                    report_id = write_analysis(tx, analysis, offered, now, revises, decided)
            except (UnusableImage, ModelError) as exc:
                store.finish(run_id, "failed", reason=str(exc))
                continue
            except Exception as exc:
                log.exception("Analysis of ImagingStudy/%s with %s failed", study_id, card.id)
                store.finish(run_id, "failed", reason=f"{type(exc).__name__}: {exc}")
                continue
            reason = "; ".join([*refused, *analysis.skipped]) or None
            store.finish(
                run_id,
                "done",
                report=report_id,
                reason=reason,
                instances=sum(analysis.series.values()),
                inference_seconds=seconds,
            )
        if fingerprint is not None:
            store.set_analysed_inputs(tenant, study_id, fingerprint)
    return run_ids
