"""The model's regions as DICOM objects (``highdicom``), stored back in the archive beside the
images so that DICOM viewers show them:

* a Segmentation (SEG) per analysed image that carries a finding's region, one binary segment
  per finding (its bounding box), in a new series of the same study, with the model as the
  segment algorithm;
* one Measurement Report (Enhanced SR, TID 1500) per analysis: per finding a planar ROI (the
  box as a closed POLYLINE in the image's pixel coordinates) with the probability as a
  measurement, in a series of its own. Viewers that place a SEG by patient coordinates (OHIF)
  cannot do so on projection radiographs, which have none; they draw the SR's regions;
* one Grayscale Softcopy Presentation State (GSPS) per analysis: per image, each finding's box
  as a closed POLYLINE and its label and probability as text, in pixel coordinates, on one
  graphic layer, which PACS workstations show over the image."""

from __future__ import annotations

import io
import logging
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from fhirhub.plugins.imaging_ai.fhir_output import OUTPUT_MANUFACTURER, Finding
from fhirhub.plugins.imaging_ai.models import ModelCard

log = logging.getLogger("fhirhub.imaging_ai")

#: Type 2 attributes highdicom copies from the source image (empty when the source has none).
_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "AccessionNumber",
    "StudyID",
)
SERIES_NUMBER = 9901
SR_SERIES_NUMBER = 9902
GSPS_SERIES_NUMBER = 9903
#: The GSPS's Content Label (CS: capital letters, digits, underscore, space; 16 at most).
GSPS_LABEL = "AI_FINDINGS"
#: Private coding scheme (PS3.3 8.2: "99" prefix) of the measurement names.
SCHEME = "99FHIRHUB"


def _with_type2(source: Dataset) -> Dataset:
    """A copy of ``source`` with the Type 2 patient and study attributes highdicom copies
    (empty when the source has none)."""
    image = Dataset()
    image.update(source)
    image.file_meta = source.file_meta
    for keyword in _COPIED:
        if keyword not in image:
            setattr(image, keyword, "")
    return image


def segmentation(card: ModelCard, source: Dataset, findings: list[Finding]) -> tuple[str, bytes]:
    """A SEG for ``findings`` (each with a box) on ``source``; returns its SOP Instance UID and
    Part 10 bytes. Segment *n* is ``findings[n - 1]``."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    image = _with_type2(source)
    rows, columns = int(source.Rows), int(source.Columns)
    mask = np.zeros((1, rows, columns, len(findings)), dtype=bool)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=card.id, version=card.version, family=codes.cid7162.ArtificialIntelligence
    )
    descriptions = []
    for number, finding in enumerate(findings, start=1):
        assert finding.box is not None
        x0, y0, x1, y1 = finding.box
        mask[0, y0 : y1 + 1, x0 : x1 + 1, number - 1] = True
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=f"{finding.label.display} {finding.probability * 100:.0f} %",
                segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
                segmented_property_type=codes.SCT.Lesion,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
            )
        )
    sop_uid = generate_uid()
    seg = hd.seg.Segmentation(
        source_images=[image],
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=SERIES_NUMBER,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=OUTPUT_MANUFACTURER,
        manufacturer_model_name=card.id,
        software_versions=card.version,
        device_serial_number="none",
        series_description=f"AI regions ({card.id} {card.version})",
    )
    buffer = io.BytesIO()
    seg.save_as(buffer)
    return sop_uid, buffer.getvalue()


def segmentations(
    card: ModelCard, sources: dict[str, Dataset], findings: list[Finding]
) -> list[tuple[str, bytes, list[Finding]]]:
    """One SEG per source image among the findings with a box; a SEG highdicom refuses is
    logged and left out (the findings keep their boxes in FHIR)."""
    by_image: dict[str, list[Finding]] = {}
    for finding in findings:
        if finding.box is not None and finding.sop_uid in sources:
            by_image.setdefault(finding.sop_uid, []).append(finding)
    made: list[tuple[str, bytes, list[Finding]]] = []
    for sop_uid, group in by_image.items():
        try:
            seg_uid, data = segmentation(card, sources[sop_uid], group)
        except Exception as exc:  # highdicom's checks on an unusual source image
            log.warning("No SEG for instance %s: %s", sop_uid, exc)
            continue
        made.append((seg_uid, data, group))
    return made


def measurement_report(
    card: ModelCard, sources: dict[str, Dataset], findings: list[Finding]
) -> tuple[str, bytes] | None:
    """An Enhanced SR measurement report (TID 1500) of the findings with a box, or None when
    none has one; returns its SOP Instance UID and Part 10 bytes."""
    import highdicom as hd
    from highdicom.sr import (
        CodedConcept,
        DeviceObserverIdentifyingAttributes,
        EnhancedSR,
        GraphicTypeValues,
        ImageRegion,
        Measurement,
        MeasurementReport,
        ObservationContext,
        ObserverContext,
        PlanarROIMeasurementsAndQualitativeEvaluations,
        SourceImageForRegion,
        TrackingIdentifier,
    )
    from pydicom.sr.codedict import codes

    boxed = [f for f in findings if f.box is not None and f.sop_uid in sources]
    if not boxed:
        return None
    images = {uid: _with_type2(ds) for uid, ds in sources.items()}
    algorithm = hd.sr.AlgorithmIdentification(name=card.id, version=card.version)
    groups = []
    for finding in boxed:
        assert finding.box is not None
        x0, y0, x1, y1 = finding.box
        # pixel (column, row) edges: the box's last column and row are inside it
        corners = [[x0, y0], [x1 + 1, y0], [x1 + 1, y1 + 1], [x0, y1 + 1], [x0, y0]]
        region = ImageRegion(
            graphic_type=GraphicTypeValues.POLYLINE,
            graphic_data=np.array(corners, dtype=float),
            source_image=SourceImageForRegion.from_source_image(images[finding.sop_uid]),
        )
        probability = round(finding.probability * 100, 1)
        name = CodedConcept(finding.label.id[:16], SCHEME, f"{finding.label.display} probability")
        groups.append(
            PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=TrackingIdentifier(
                    uid=generate_uid(), identifier=f"{finding.label.display} {probability:.0f} %"
                ),
                referenced_region=region,
                finding_type=codes.SCT.Lesion,
                algorithm_id=algorithm,
                measurements=[
                    Measurement(
                        name=name,
                        value=probability,
                        unit=codes.UCUM.Percent,
                        algorithm_id=algorithm,
                    )
                ],
            )
        )
    device = DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=[card.id, card.version]),
        name=card.id,
        model_name=card.version,
    )
    report = MeasurementReport(
        observation_context=ObservationContext(
            observer_device_context=ObserverContext(
                observer_type=codes.DCM.Device, observer_identifying_attributes=device
            )
        ),
        procedure_reported=CodedConcept("18748-4", "LN", "Diagnostic imaging study"),
        imaging_measurements=groups,
    )
    evidence = [images[uid] for uid in dict.fromkeys(f.sop_uid for f in boxed)]
    sop_uid = generate_uid()
    sr = EnhancedSR(
        evidence=evidence,
        content=report[0],
        series_instance_uid=generate_uid(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=OUTPUT_MANUFACTURER,
        series_description=f"AI findings ({card.id} {card.version})",
        is_complete=True,
        is_final=False,
        is_verified=False,
    )
    buffer = io.BytesIO()
    sr.save_as(buffer)
    return sop_uid, buffer.getvalue()


def _corners(box: tuple[int, int, int, int]) -> np.ndarray:
    """A box's outline as a closed polyline of (column, row) pixel edges: its last column
    and row are inside it."""
    x0, y0, x1, y1 = box
    return np.array([[x0, y0], [x1 + 1, y0], [x1 + 1, y1 + 1], [x0, y1 + 1], [x0, y0]], dtype=float)


def presentation_state(
    card: ModelCard, sources: dict[str, Dataset], findings: list[Finding]
) -> tuple[str, bytes] | None:
    """A GSPS drawing the findings' boxes (with their label and probability) over their
    images, or None when no finding has a box; returns its SOP Instance UID and Part 10
    bytes."""
    from highdicom.pr import (
        AnnotationUnitsValues,
        GraphicAnnotation,
        GraphicLayer,
        GraphicObject,
        GraphicTypeValues,
        GrayscaleSoftcopyPresentationState,
        TextObject,
    )

    boxed = [f for f in findings if f.box is not None and f.sop_uid in sources]
    if not boxed:
        return None
    layer = GraphicLayer(layer_name=GSPS_LABEL, order=1, description=f"{card.id} findings")
    images = {uid: _with_type2(sources[uid]) for uid in dict.fromkeys(f.sop_uid for f in boxed)}
    annotations = []
    for uid, image in images.items():
        graphics, texts = [], []
        for finding in (f for f in boxed if f.sop_uid == uid):
            assert finding.box is not None
            graphics.append(
                GraphicObject(
                    graphic_type=GraphicTypeValues.POLYLINE,
                    graphic_data=_corners(finding.box),
                    units=AnnotationUnitsValues.PIXEL,
                    tracking_id=finding.label.id,
                    tracking_uid=generate_uid(),
                )
            )
            x0, y0 = finding.box[0], finding.box[1]
            texts.append(
                TextObject(
                    text_value=f"{finding.label.display} {finding.probability * 100:.0f} %",
                    units=AnnotationUnitsValues.PIXEL,
                    anchor_point=(float(x0), float(max(0, y0 - 2))),
                    anchor_point_visible=False,
                )
            )
        annotations.append(
            GraphicAnnotation(
                referenced_images=[image],
                graphic_layer=layer,
                graphic_objects=graphics,
                text_objects=texts,
            )
        )
    sop_uid = generate_uid()
    gsps = GrayscaleSoftcopyPresentationState(
        referenced_images=list(images.values()),
        series_instance_uid=generate_uid(),
        series_number=GSPS_SERIES_NUMBER,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=OUTPUT_MANUFACTURER,
        manufacturer_model_name=card.id,
        software_versions=card.version,
        device_serial_number=card.version,
        content_label=GSPS_LABEL,
        content_description=f"AI findings ({card.id} {card.version})"[:64],
        graphic_annotations=annotations,
        graphic_layers=[layer],
        series_description=f"AI annotations ({card.id} {card.version})"[:64],
    )
    buffer = io.BytesIO()
    gsps.save_as(buffer)
    return sop_uid, buffer.getvalue()


def describe(made: list[tuple[str, bytes, list[Finding]]]) -> dict[int, Any]:
    """finding id() -> (SEG SOP Instance UID, segment number), for the Observations."""
    return {
        id(finding): (seg_uid, number)
        for seg_uid, _data, group in made
        for number, finding in enumerate(group, start=1)
    }
