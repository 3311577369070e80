"""The SR measurement report beside the SEGs: one planar ROI per boxed finding, the box as a
closed POLYLINE in the image's pixel coordinates, the probability as a measurement."""

from __future__ import annotations

import io

import pydicom

from fhirhub.plugins.imaging_ai.fhir_output import Finding
from fhirhub.plugins.imaging_ai.models import SHIPPED, load_card
from fhirhub.plugins.imaging_ai.overlays import (
    GSPS_SERIES_NUMBER,
    SCHEME,
    SR_SERIES_NUMBER,
    measurement_report,
    presentation_state,
)
from tests.plugins.imaging_ai.helpers import phantom_study


def test_measurement_report_of_the_boxed_findings() -> None:
    card = load_card(SHIPPED)
    first, second = phantom_study(2)
    sources = {str(first.SOPInstanceUID): first, str(second.SOPInstanceUID): second}
    focal, diffuse = card.labels
    findings = [
        Finding(
            focal, 0.614, str(first.SeriesInstanceUID), str(first.SOPInstanceUID), (10, 20, 30, 40)
        ),
        Finding(diffuse, 0.3, str(second.SeriesInstanceUID), str(second.SOPInstanceUID), None),
    ]
    made = measurement_report(card, sources, findings)
    assert made is not None
    sop_uid, data = made
    sr = pydicom.dcmread(io.BytesIO(data))
    assert sr.SOPInstanceUID == sop_uid and sr.Modality == "SR"
    assert sr.StudyInstanceUID == first.StudyInstanceUID and sr.PatientID == first.PatientID
    assert sr.SeriesNumber == SR_SERIES_NUMBER
    assert sr.CompletionFlag == "COMPLETE" and sr.VerificationFlag == "UNVERIFIED"
    items = list(_walk(sr.ContentSequence))
    (scoord,) = [i for i in items if i.ValueType == "SCOORD"]
    assert scoord.GraphicType == "POLYLINE"
    assert [float(v) for v in scoord.GraphicData] == [10, 20, 31, 20, 31, 41, 10, 41, 10, 20]
    image = scoord.ContentSequence[0].ReferencedSOPSequence[0]
    assert image.ReferencedSOPInstanceUID == first.SOPInstanceUID
    (number,) = [i for i in items if i.ValueType == "NUM"]
    assert number.ConceptNameCodeSequence[0].CodingSchemeDesignator == SCHEME
    assert float(number.MeasuredValueSequence[0].NumericValue) == 61.4
    assert number.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue == "%"
    # no box, no report
    assert measurement_report(card, sources, findings[1:]) is None


def _walk(sequence):  # type: ignore[no-untyped-def]
    for item in sequence:
        yield item
        if "ContentSequence" in item:
            yield from _walk(item.ContentSequence)


def test_presentation_state_draws_the_boxes_over_their_images() -> None:
    card = load_card(SHIPPED)
    first, second = phantom_study(2)
    sources = {str(first.SOPInstanceUID): first, str(second.SOPInstanceUID): second}
    focal, diffuse = card.labels
    findings = [
        Finding(
            focal, 0.614, str(first.SeriesInstanceUID), str(first.SOPInstanceUID), (10, 20, 30, 40)
        ),
        Finding(diffuse, 0.3, str(second.SeriesInstanceUID), str(second.SOPInstanceUID), None),
    ]
    made = presentation_state(card, sources, findings)
    assert made is not None
    sop_uid, data = made
    pr = pydicom.dcmread(io.BytesIO(data))
    assert pr.SOPInstanceUID == sop_uid and pr.Modality == "PR"
    assert pr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.11.1"  # Grayscale Softcopy PS
    assert pr.StudyInstanceUID == first.StudyInstanceUID and pr.SeriesNumber == GSPS_SERIES_NUMBER
    assert pr.SeriesDescription == "AI annotations (synthetic-opacity 1.0.0)"
    (series,) = pr.ReferencedSeriesSequence
    assert [i.ReferencedSOPInstanceUID for i in series.ReferencedImageSequence] == [
        first.SOPInstanceUID
    ]
    (annotation,) = pr.GraphicAnnotationSequence
    assert annotation.ReferencedImageSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID
    (graphic,) = annotation.GraphicObjectSequence
    assert graphic.GraphicType == "POLYLINE" and graphic.GraphicAnnotationUnits == "PIXEL"
    assert [float(v) for v in graphic.GraphicData] == [10, 20, 31, 20, 31, 41, 10, 41, 10, 20]
    (text,) = annotation.TextObjectSequence
    assert text.UnformattedTextValue == "Focal opacity 61 %"
    assert pr.GraphicLayerSequence[0].GraphicLayer == annotation.GraphicLayer
    assert presentation_state(card, sources, findings[1:]) is None
