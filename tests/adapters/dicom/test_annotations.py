"""Which graphic annotations of a presentation state apply to an image (PS3.3 C.10.5): those
whose own Referenced Image Sequence names it, or, without one, all the images the presentation
state references; DISPLAY units and text boxes kept as stored."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from fhirhub.adapters.dicom.annotations import presentation_annotations


def _refs(*uids: str) -> Sequence:
    items = []
    for uid in uids:
        item = Dataset()
        item.ReferencedSOPInstanceUID = uid
        items.append(item)
    return Sequence(items)


def _state() -> Dataset:
    ds = Dataset()
    ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.SeriesNumber = "9.1", "9.2", 5
    ds.ContentLabel = "MARKS"
    series = Dataset()
    series.ReferencedImageSequence = _refs("1.1", "1.2")
    ds.ReferencedSeriesSequence = Sequence([series])
    layer = Dataset()
    layer.GraphicLayer, layer.GraphicLayerOrder = "L1", 1
    ds.GraphicLayerSequence = Sequence([layer])
    everywhere, only_second = Dataset(), Dataset()
    everywhere.GraphicLayer = only_second.GraphicLayer = "L1"
    line = Dataset()
    line.GraphicAnnotationUnits, line.GraphicType = "DISPLAY", "POLYLINE"
    line.GraphicDimensions, line.NumberOfGraphicPoints = 2, 2
    line.GraphicData, line.GraphicFilled = [0.1, 0.2, 0.5, 0.6], "N"
    everywhere.GraphicObjectSequence = Sequence([line])
    text = Dataset()
    text.BoundingBoxAnnotationUnits = "PIXEL"
    text.UnformattedTextValue = "note"
    text.BoundingBoxTopLeftHandCorner, text.BoundingBoxBottomRightHandCorner = [1, 2], [30, 12]
    only_second.ReferencedImageSequence = _refs("1.2")
    only_second.TextObjectSequence = Sequence([text])
    ds.GraphicAnnotationSequence = Sequence([everywhere, only_second])
    return ds


def test_annotations_that_apply_to_each_image() -> None:
    state = _state()
    first = presentation_annotations(state, "1.1")
    assert first is not None
    assert first["graphics"] == [
        {
            "layer": "L1",
            "type": "POLYLINE",
            "units": "DISPLAY",
            "points": [[0.1, 0.2], [0.5, 0.6]],
            "filled": False,
        }
    ]
    assert first["texts"] == [] and first["layers"][0]["name"] == "L1"
    second = presentation_annotations(state, "1.2")
    assert second is not None and len(second["graphics"]) == 1
    assert second["texts"] == [
        {"layer": "L1", "text": "note", "units": "PIXEL", "anchor": None, "box": [1, 2, 30, 12]}
    ]
    assert presentation_annotations(state, "1.3") is None  # not referenced
