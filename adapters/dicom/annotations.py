"""The graphic annotations that presentation states of a study draw over one image, and the
regions its structured reports place on it, as JSON for the built-in series viewer
(:mod:`.viewer`), which draws them over the rendered frame.

``GET /plugins/dicom/annotations/studies/{study}/series/{series}/instances/{sop}`` answers::

    {"image": sop, "rows": 256, "columns": 256,
     "presentationStates": [{"sopInstanceUID", "seriesInstanceUID", "seriesNumber",
                             "label", "description",
                             "layers": [{"name", "order", "description"}],
                             "graphics": [{"layer", "type", "units", "points", "filled"}],
                             "texts": [{"layer", "text", "units", "anchor", "box"}]}],
     "structuredReports": [{"sopInstanceUID", "seriesInstanceUID", "seriesNumber",
                            "description",
                            "regions": [{"type", "units", "points", "filled", "text"}]}]}

Points are ``[column, row]`` pairs as the presentation state stores them (PS3.3 C.10.5.1.2):
``PIXEL`` units put (0, 0) at the top left corner of the top left pixel and
(Columns, Rows) at the bottom right corner of the last one; ``DISPLAY`` units are fractions
(0..1) of the displayed area. Only the annotations that apply to the image are listed: an
annotation's own Referenced Image Sequence names it, or (without one) the presentation state
references it. A structured report's region is a 2D SCOORD (in PIXEL units) whose SELECTED
FROM image reference names the image; its text is its measurement group's tracking identifier
and measurements (TID 1500 / 1410).

Who sees what is DICOMweb's rule (:func:`.dicomweb.caller_view`): an image the caller cannot
retrieve answers 404, and only presentation states stored for the caller's tenant are read.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter
from fastapi.responses import Response
from pydicom.dataset import Dataset

from fhirhub.adapters.dicom.archive import archive_for
from fhirhub.adapters.dicom.content_store import StoreUnavailable
from fhirhub.adapters.dicom.dicomweb import _unavailable, caller_view

if TYPE_CHECKING:
    from fhirhub.sdk import Hub

#: Softcopy Presentation State Storage SOP Classes carrying Graphic Annotation (PS3.4 B.5):
#: grayscale, color, pseudo-color and blending.
PRESENTATION_STATE_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.11.1",
        "1.2.840.10008.5.1.4.1.1.11.2",
        "1.2.840.10008.5.1.4.1.1.11.3",
        "1.2.840.10008.5.1.4.1.1.11.4",
    }
)


#: SR Storage SOP Classes whose 2D spatial coordinates (SCOORD) are drawn: Enhanced and
#: Comprehensive SR (PS3.4 B.5), as TID 1500 measurement reports are stored.
STRUCTURED_REPORT_CLASSES = frozenset(
    {"1.2.840.10008.5.1.4.1.1.88.22", "1.2.840.10008.5.1.4.1.1.88.33"}
)
#: DCM 112039 "Tracking Identifier" (TID 1410): names a planar ROI in its measurement group.
TRACKING_IDENTIFIER = "112039"


def _points(values: Any) -> list[list[float]]:
    flat = [float(v) for v in values or []]
    return [[flat[i], flat[i + 1]] for i in range(0, len(flat) - 1, 2)]


def _referenced_sops(items: Any) -> set[str]:
    return {str(item.ReferencedSOPInstanceUID) for item in items or []}


def _state_images(ds: Dataset) -> set[str]:
    """The images a presentation state applies to (Presentation State Relationship module)."""
    return {
        uid
        for series in ds.get("ReferencedSeriesSequence", [])
        for uid in _referenced_sops(series.get("ReferencedImageSequence"))
    }


def presentation_annotations(ds: Dataset, sop_uid: str) -> dict[str, Any] | None:
    """What presentation state ``ds`` draws over image ``sop_uid`` (None: nothing)."""
    applies_to_state = sop_uid in _state_images(ds)
    graphics: list[dict[str, Any]] = []
    texts: list[dict[str, Any]] = []
    for annotation in ds.get("GraphicAnnotationSequence", []):
        own = annotation.get("ReferencedImageSequence")
        if not (sop_uid in _referenced_sops(own) if own else applies_to_state):
            continue
        layer = str(annotation.get("GraphicLayer", ""))
        for graphic in annotation.get("GraphicObjectSequence", []):
            graphics.append(
                {
                    "layer": layer,
                    "type": str(graphic.get("GraphicType", "")),
                    "units": str(graphic.get("GraphicAnnotationUnits", "PIXEL")),
                    "points": _points(graphic.get("GraphicData")),
                    "filled": str(graphic.get("GraphicFilled", "N")) == "Y",
                }
            )
        for text in annotation.get("TextObjectSequence", []):
            box = None
            if "BoundingBoxTopLeftHandCorner" in text:
                box = [
                    *map(float, text.BoundingBoxTopLeftHandCorner),
                    *map(float, text.BoundingBoxBottomRightHandCorner),
                ]
            anchor = list(map(float, text.AnchorPoint)) if "AnchorPoint" in text else None
            units = text.get("BoundingBoxAnnotationUnits") or text.get("AnchorPointAnnotationUnits")
            texts.append(
                {
                    "layer": layer,
                    "text": str(text.get("UnformattedTextValue", "")),
                    "units": str(units or "PIXEL"),
                    "anchor": anchor,
                    "box": box,
                }
            )
    if not graphics and not texts:
        return None
    used = {item["layer"] for item in [*graphics, *texts]}
    layers = [
        {
            "name": str(layer.GraphicLayer),
            "order": int(layer.get("GraphicLayerOrder", 0)),
            "description": str(layer.get("GraphicLayerDescription", "")),
        }
        for layer in ds.get("GraphicLayerSequence", [])
        if str(layer.GraphicLayer) in used
    ]
    return {
        "sopInstanceUID": str(ds.SOPInstanceUID),
        "seriesInstanceUID": str(ds.SeriesInstanceUID),
        "seriesNumber": int(ds.SeriesNumber) if ds.get("SeriesNumber") is not None else None,
        "label": str(ds.get("ContentLabel", "")),
        "description": str(ds.get("ContentDescription", "")),
        "layers": sorted(layers, key=lambda layer: layer["order"]),
        "graphics": graphics,
        "texts": texts,
    }


def _concept(item: Dataset) -> tuple[str, str]:
    names = item.get("ConceptNameCodeSequence") or [Dataset()]
    return str(names[0].get("CodeValue", "")), str(names[0].get("CodeMeaning", ""))


def _group_label(children: list[Dataset]) -> str:
    """A measurement group's text: its tracking identifier and its numeric measurements."""
    tracking, measurements = "", []
    for item in children:
        value_type = item.get("ValueType")
        if value_type == "TEXT" and _concept(item)[0] == TRACKING_IDENTIFIER and not tracking:
            tracking = str(item.get("TextValue", ""))
        elif value_type == "NUM" and item.get("MeasuredValueSequence"):
            measured = item.MeasuredValueSequence[0]
            units = measured.get("MeasurementUnitsCodeSequence") or [Dataset()]
            unit = str(units[0].get("CodeValue", ""))
            measurements.append(f"{_concept(item)[1]} {float(measured.NumericValue):g} {unit}")
    values = ", ".join(m.strip() for m in measurements)
    return f"{tracking}: {values}" if tracking and values else tracking or values


def report_regions(ds: Dataset, sop_uid: str) -> dict[str, Any] | None:
    """The 2D regions (SCOORD) a structured report places on image ``sop_uid`` (their
    SELECTED FROM image reference names it), each with its measurement group's text."""
    regions: list[dict[str, Any]] = []

    def walk(items: Any) -> None:
        children = list(items or [])
        label = None
        for item in children:
            if item.get("ValueType") == "SCOORD":
                images = {
                    str(ref.ReferencedSOPInstanceUID)
                    for child in item.get("ContentSequence", [])
                    for ref in child.get("ReferencedSOPSequence", [])
                }
                if sop_uid in images:
                    label = _group_label(children) if label is None else label
                    regions.append(
                        {
                            "type": str(item.get("GraphicType", "")),
                            "units": "PIXEL",
                            "points": _points(item.get("GraphicData")),
                            "filled": False,
                            "text": label,
                        }
                    )
            if "ContentSequence" in item:
                walk(item.ContentSequence)

    walk(ds.get("ContentSequence"))
    if not regions:
        return None
    return {
        "sopInstanceUID": str(ds.SOPInstanceUID),
        "seriesInstanceUID": str(ds.SeriesInstanceUID),
        "seriesNumber": int(ds.SeriesNumber) if ds.get("SeriesNumber") is not None else None,
        "description": str(ds.get("SeriesDescription", "")),
        "regions": regions,
    }


def make_annotations_router(hub: Hub) -> APIRouter:
    router = APIRouter(prefix="/annotations", tags=["DICOM annotations"])

    @lru_cache(maxsize=256)
    def header_of(digest: str) -> Dataset:
        """A stored file's header: files are content-addressed, a digest never changes."""
        return archive_for(hub).dataset(digest, stop_before_pixels=True)

    @router.get("/studies/{study}/series/{series}/instances/{sop}")
    def image_annotations(study: str, series: str, sop: str) -> Response:
        archive = archive_for(hub)
        view = caller_view()
        image = archive.index.instances(view, study, series, sop)
        if not image:
            return Response("No such instance", status_code=404, media_type="text/plain")
        in_study = archive.index.instances(view, study)
        try:
            header = header_of(image[0].digest)
            drawn = [
                presentation_annotations(header_of(i.digest), sop)
                for i in in_study
                if i.sop_class_uid in PRESENTATION_STATE_CLASSES
            ]
            placed = [
                report_regions(header_of(i.digest), sop)
                for i in in_study
                if i.sop_class_uid in STRUCTURED_REPORT_CLASSES
            ]
        except StoreUnavailable as exc:
            return _unavailable(exc)
        body = {
            "image": sop,
            "rows": int(header.get("Rows", 0)),
            "columns": int(header.get("Columns", 0)),
            "presentationStates": [state for state in drawn if state is not None],
            "structuredReports": [report for report in placed if report is not None],
        }
        return Response(orjson.dumps(body), media_type="application/json")

    return router
