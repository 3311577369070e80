"""The graphic annotations that presentation states of a study draw over one image, as JSON
for the built-in series viewer (:mod:`.viewer`), which draws them over the rendered frame.

``GET /plugins/dicom/annotations/studies/{study}/series/{series}/instances/{sop}`` answers::

    {"image": sop, "rows": 256, "columns": 256,
     "presentationStates": [{"sopInstanceUID", "seriesInstanceUID", "seriesNumber",
                             "label", "description",
                             "layers": [{"name", "order", "description"}],
                             "graphics": [{"layer", "type", "units", "points", "filled"}],
                             "texts": [{"layer", "text", "units", "anchor", "box"}]}]}

Points are ``[column, row]`` pairs as the presentation state stores them (PS3.3 C.10.5.1.2):
``PIXEL`` units put (0, 0) at the top left corner of the top left pixel and
(Columns, Rows) at the bottom right corner of the last one; ``DISPLAY`` units are fractions
(0..1) of the displayed area. Only the annotations that apply to the image are listed: an
annotation's own Referenced Image Sequence names it, or (without one) the presentation state
references it.

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
        states = [
            i
            for i in archive.index.instances(view, study)
            if i.sop_class_uid in PRESENTATION_STATE_CLASSES
        ]
        try:
            header = header_of(image[0].digest)
            drawn = [presentation_annotations(header_of(s.digest), sop) for s in states]
        except StoreUnavailable as exc:
            return _unavailable(exc)
        body = {
            "image": sop,
            "rows": int(header.get("Rows", 0)),
            "columns": int(header.get("Columns", 0)),
            "presentationStates": [state for state in drawn if state is not None],
        }
        return Response(orjson.dumps(body), media_type="application/json")

    return router
