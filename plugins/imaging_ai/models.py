"""Models: a JSON card beside an ``.onnx`` file, run with ONNX Runtime.

A card (``card.json``) says what the model is and what it may be run on: ``id``, ``name``,
``version``, ``file`` (the ``.onnx`` file, relative to the card), ``licence``,
``intended_use``, ``modalities`` and ``body_parts`` (DICOM codes; empty: any), ``input``
(``name``, ``height``, ``width``, ``window``: ``"header"`` or ``{"center", "width"}``),
``outputs`` (``probabilities``: the output [N, labels] of sigmoid probabilities;
``region_index``, optional: [N, labels] flattened input positions of each label's region) and
``labels`` (``id``, ``display``, ``code`` a FHIR Coding, ``region_radius`` as a fraction of the
image side). ``validation`` holds the figures measured on held-out data (docs/imaging_ai.md).

The shipped model is registered by default; ``[plugin.imaging_ai] models`` adds paths of more
cards, or models by URL (:func:`fetch_model`: fetched once into a cache, checked against the
configured SHA-256, never fetched again while the cache holds them). Sessions are created on
first use and kept: CUDA when onnxruntime offers it, else CPU.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fhirhub.plugins.imaging_ai.pixels import Window
from fhirhub.plugins.imaging_ai.settings import ModelSource

SHIPPED = Path(__file__).parent / "models" / "synthetic-opacity" / "card.json"


class ModelError(ValueError):
    """A card or model file that cannot be used."""


@dataclass(frozen=True)
class Label:
    id: str
    display: str
    code: dict[str, str]
    region_radius: float = 0.1


@dataclass
class ModelCard:
    id: str
    name: str
    version: str
    path: Path  # the .onnx file
    licence: str
    intended_use: str
    modalities: tuple[str, ...]
    body_parts: tuple[str, ...]
    input_name: str
    height: int
    width: int
    window: Window | None  # None: the instance's own window (header)
    probabilities_output: str
    region_output: str | None
    labels: tuple[Label, ...]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    def fits(self, modality: str, body_part: str | None) -> bool:
        """Whether a series of this modality and body part is what the model was made for."""
        if self.modalities and modality.upper() not in self.modalities:
            return False
        if self.body_parts and (body_part or "").upper() not in self.body_parts:
            return False
        return True

    def public(self) -> dict[str, Any]:
        """The card as ``GET /plugins/imaging_ai/models`` lists it (no file system paths)."""
        return {k: v for k, v in self.raw.items() if k != "file"}


def load_card(card_path: Path) -> ModelCard:
    """Read and check a card; :class:`ModelError` says what is wrong."""
    try:
        raw = json.loads(card_path.read_text())
        model_file = (card_path.parent / raw["file"]).resolve()
        window = raw["input"].get("window", "header")
        labels = tuple(
            Label(
                id=str(label["id"]),
                display=str(label.get("display", label["id"])),
                code=dict(label["code"]),
                region_radius=float(label.get("region_radius", 0.1)),
            )
            for label in raw["labels"]
        )
        card = ModelCard(
            id=str(raw["id"]),
            name=str(raw.get("name", raw["id"])),
            version=str(raw["version"]),
            path=model_file,
            licence=str(raw.get("licence", "")),
            intended_use=str(raw.get("intended_use", "")),
            modalities=tuple(m.upper() for m in raw.get("modalities", [])),
            body_parts=tuple(b.upper() for b in raw.get("body_parts", [])),
            input_name=str(raw["input"].get("name", "image")),
            height=int(raw["input"]["height"]),
            width=int(raw["input"]["width"]),
            window=None
            if window == "header"
            else Window(float(window["center"]), float(window["width"])),
            probabilities_output=str(raw["outputs"]["probabilities"]),
            region_output=raw["outputs"].get("region_index"),
            labels=labels,
            raw=raw,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"Model card {card_path} is not usable: {exc!r}") from exc
    if not card.path.is_file():
        raise ModelError(f"Model card {card_path} names a missing file {card.path.name}")
    if not card.labels:
        raise ModelError(f"Model card {card_path} lists no labels")
    return card


def providers() -> list[str]:
    """CUDA first when this onnxruntime build offers it, CPU always."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


@dataclass
class Prediction:
    """One image's outputs: a probability per label, and the region centre per label as
    fractions of the image (row, column), when the model gives regions."""

    probabilities: list[float]
    centres: list[tuple[float, float] | None]


class OnnxModel:
    """A card and its ONNX Runtime session (created on first use, shared by threads:
    ``InferenceSession.run`` is thread-safe)."""

    def __init__(self, card: ModelCard) -> None:
        self.card = card
        self._session: Any = None
        self._lock = threading.Lock()

    @property
    def session(self) -> Any:
        with self._lock:
            if self._session is None:
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.intra_op_num_threads = 1  # runs are parallel per study, not per image
                self._session = ort.InferenceSession(
                    str(self.card.path), options, providers=providers()
                )
            return self._session

    def predict(self, images: np.ndarray) -> list[Prediction]:
        """``images``: [N, height, width] float32 in [0, 1]."""
        card = self.card
        batch = images.reshape(len(images), 1, card.height, card.width).astype(np.float32)
        names = [card.probabilities_output] + ([card.region_output] if card.region_output else [])
        outputs = self.session.run(names, {card.input_name: batch})
        probabilities = np.asarray(outputs[0], dtype=np.float64)
        if probabilities.shape != (len(images), len(card.labels)):
            raise ModelError(
                f"{card.id} answered {probabilities.shape}, its card promises "
                f"[{len(images)}, {len(card.labels)}]"
            )
        regions = np.asarray(outputs[1]) if card.region_output else None
        predictions = []
        for i in range(len(images)):
            centres: list[tuple[float, float] | None] = []
            for j in range(len(card.labels)):
                if regions is None:
                    centres.append(None)
                    continue
                index = int(regions[i, j])
                row, col = divmod(index, card.width)
                centres.append(((row + 0.5) / card.height, (col + 0.5) / card.width))
            predictions.append(Prediction([float(p) for p in probabilities[i]], centres))
        return predictions


#: Schemes a model may be fetched by; a ``file://`` URL is a copy into the cache.
SCHEMES = ("http", "https", "file")
_SHA256 = re.compile(r"[0-9a-f]{64}")
FETCH_TIMEOUT = 60.0  # seconds without data before a download is given up


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, target: Path) -> str:
    """``url`` into ``target`` (written beside it, then renamed); returns its SHA-256."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        raise ModelError(f"Model URL {url!r}: only {', '.join(SCHEMES)} URLs can be fetched")
    partial = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as response:  # noqa: S310
            with partial.open("wb") as out:
                for block in iter(lambda: response.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
    except OSError as exc:  # URLError, HTTPError, a refused connection, a missing file
        partial.unlink(missing_ok=True)
        raise ModelError(f"Model URL {url} cannot be fetched: {exc}") from exc
    os.replace(partial, target)
    return digest.hexdigest()


def fetch_model(source: ModelSource, cache: Path) -> Path:
    """The card of a model registered by URL, in the cache (``<cache>/<sha256>/``): fetched
    the first time, checked against ``source.sha256`` (and ``card_sha256`` when given), and
    taken from the cache, without any request, every later time. A file whose SHA-256 differs
    is deleted and refused with :class:`ModelError`."""
    expected = source.sha256.strip().lower()
    if not _SHA256.fullmatch(expected):
        raise ModelError(f"Model {source.model}: sha256 must be 64 hexadecimal digits")
    folder = cache / expected
    model_path, card_path = folder / "model.onnx", folder / "card.json"
    if model_path.is_file() and card_path.is_file() and _sha256_of(model_path) == expected:
        return card_path
    folder.mkdir(parents=True, exist_ok=True)
    try:
        actual = _download(source.model, model_path)
        if actual != expected:
            raise ModelError(
                f"Model {source.model} has SHA-256 {actual}, the configuration expects "
                f"{expected}: refused (a changed or corrupted file; check the URL and the sum)"
            )
        fetched = folder / "card.fetched.json"
        card_digest = _download(source.card, fetched)
        wanted = (source.card_sha256 or "").strip().lower()
        if wanted and card_digest != wanted:
            raise ModelError(
                f"Model card {source.card} has SHA-256 {card_digest}, the configuration "
                f"expects {wanted}: refused"
            )
        try:
            raw = json.loads(fetched.read_text())
            raw["file"] = model_path.name  # the card sits beside the fetched model
        except (ValueError, TypeError) as exc:
            raise ModelError(f"Model card {source.card} is not a JSON card: {exc}") from exc
        card_path.with_suffix(".tmp").write_text(json.dumps(raw, indent=1))
        os.replace(card_path.with_suffix(".tmp"), card_path)
        fetched.unlink()
    except ModelError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return card_path


def load_models(extra: list[str | ModelSource], cache: Path | None = None) -> dict[str, OnnxModel]:
    """The shipped model and the configured ones (card paths, or models by URL fetched into
    ``cache``), by id (a later card with the same id wins)."""
    paths = [SHIPPED]
    for item in extra:
        if isinstance(item, ModelSource):
            if cache is None:
                raise ModelError(f"Model {item.model}: no model cache to fetch it into")
            paths.append(fetch_model(item, cache))
        else:
            paths.append(Path(item))
    models: dict[str, OnnxModel] = {}
    for path in paths:
        card = load_card(path)
        models[card.id] = OnnxModel(card)
    return models
