"""The shipped model: its card, and its outputs on the card's fixed test images (no silent
drift between the recorded figures and what the hub computes)."""

from __future__ import annotations

import io
import json

import numpy as np
import pydicom
import pytest

from fhirhub.plugins.imaging_ai import synthetic
from fhirhub.plugins.imaging_ai.models import SHIPPED, ModelError, OnnxModel, load_card
from fhirhub.plugins.imaging_ai.pixels import UnusableImage, model_input


def test_shipped_card_is_complete() -> None:
    card = load_card(SHIPPED)
    assert card.path.is_file() and card.path.stat().st_size < 100_000
    assert card.fits("DX", "CHEST") and card.fits("cr", "chest")
    assert not card.fits("CT", "CHEST") and not card.fits("DX", "HEAD")
    validation = card.raw["validation"]
    assert validation["count"] == 1000
    assert set(validation["labels"]) == {label.id for label in card.labels}
    for figures in validation["labels"].values():
        assert 0.5 <= figures["auc"] <= 1.0


def test_outputs_on_the_fixed_test_images_match_the_card() -> None:
    card = load_card(SHIPPED)
    validation = card.raw["validation"]
    expected = np.array(validation["reference_outputs"])
    phantoms = synthetic.phantom_set(validation["seed"], len(expected))
    images = []
    for item in phantoms:
        ds = synthetic.to_dataset(item, study_uid="1.2.826.0.1.1", series_uid="1.2.826.0.1.2")
        ds = pydicom.dcmread(io.BytesIO(synthetic.part10(ds)))
        images.append(model_input(ds, card.height, card.width, card.window))
    predictions = OnnxModel(card).predict(np.stack(images))
    got = np.array([p.probabilities for p in predictions])
    np.testing.assert_allclose(got, expected, atol=2e-5)
    # the regions point at the findings: the focal centre lies in its box for most positives
    hits = total = 0
    for item, prediction in zip(phantoms, predictions, strict=True):
        if item.centres[0] is None or prediction.probabilities[0] < 0.5:
            continue
        total += 1
        row, col = prediction.centres[0]  # type: ignore[misc]
        r, c = item.centres[0]
        hits += abs(row * synthetic.SIZE - r) < 24 and abs(col * synthetic.SIZE - c) < 24
    assert total == 0 or hits / total >= 0.5


def test_a_card_naming_a_missing_file_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    raw = json.loads(SHIPPED.read_text())
    (tmp_path / "card.json").write_text(json.dumps({**raw, "file": "absent.onnx"}))
    with pytest.raises(ModelError, match="missing file"):
        load_card(tmp_path / "card.json")
    (tmp_path / "card.json").write_text("{not json")
    with pytest.raises(ModelError):
        load_card(tmp_path / "card.json")


def test_pixels_monochrome1_is_inverted_and_no_pixels_is_refused() -> None:
    item = synthetic.phantom(np.random.default_rng(1), False, False)
    ds = synthetic.to_dataset(item, study_uid="1.2.3", series_uid="1.2.3.4")
    plain = model_input(ds, 64, 64)
    ds.PhotometricInterpretation = "MONOCHROME1"
    np.testing.assert_allclose(model_input(ds, 64, 64), 1 - plain, atol=1e-6)
    del ds.PixelData
    with pytest.raises(UnusableImage, match="no pixel data"):
        model_input(ds, 64, 64)
