"""Train and export the shipped demonstration model ``synthetic-opacity`` (reproducibly).

    PYTHONPATH=. .venv/bin/python tools/train_imaging_model.py   # rewrites model.onnx + card.json

What it is: a fixed feature extractor (two difference-of-Gaussians filters, a small and a large
scale, written as ONNX ``Conv`` nodes) followed by a logistic-regression head per label whose
weights are fitted here, in numpy, on synthetic phantoms (:mod:`fhirhub.plugins.imaging_ai.
synthetic`). The whole model is one ONNX graph (opset 18): input ``image`` [N, 1, 64, 64]
float32 in [0, 1]; outputs ``probabilities`` [N, 2] and ``peak_index`` [N, 2] (the flattened
64 x 64 position of each filter's strongest response, the finding's region).

Training data: 2,000 phantoms (seed 2026); validation: 1,000 other phantoms (seed 7), every one
written as a DICOM instance and read back through the plugin's own pixel path, so the figures
in the card are those of the pipeline the hub runs. Needs the ``onnx`` package (test extra)
and onnxruntime. Deterministic: the same inputs give the same bytes.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pydicom
from onnx import TensorProto, helper, numpy_helper

from fhirhub.plugins.imaging_ai import pixels, synthetic

MODEL_DIR = Path(__file__).resolve().parents[1] / "plugins" / "imaging_ai" / "models"
OUT = MODEL_DIR / "synthetic-opacity"
INPUT = 64
TRAIN_SEED, TRAIN_COUNT = 2026, 2000
TEST_SEED, TEST_COUNT = 7, 1000
VERSION = "1.0.0"
REFERENCE_COUNT = 16


def gaussian(size: int, sigma: float) -> np.ndarray:
    axis = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(axis**2) / (2 * sigma**2))
    kernel = np.outer(g, g)
    return kernel / kernel.sum()


def dog(size: int, sigma: float) -> np.ndarray:
    """Difference of Gaussians: a blob of about ``sigma`` answers strongest at its centre."""
    return (gaussian(size, sigma) - gaussian(size, 2 * sigma)).astype(np.float32)


FILTERS = ((13, 1.4), (45, 6.0))  # (kernel size, sigma) at 64 px: focal, diffuse


def feature_nodes() -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """image -> features [N, 6] (per filter: max and mean of its positive response; the image's
    mean and standard deviation) and peak_index [N, 2]."""
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    maxima, means, peaks = [], [], []
    for i, (size, sigma) in enumerate(FILTERS):
        kernel = dog(size, sigma)[None, None]
        inits.append(numpy_helper.from_array(kernel, f"dog{i}"))
        pad = size // 2
        # edge padding: zero padding would make the image border the brightest "blob"
        inits.append(numpy_helper.from_array(np.array([0, 0, pad, pad] * 2, np.int64), f"pad{i}"))
        nodes += [
            helper.make_node("Pad", ["image", f"pad{i}"], [f"padded{i}"], mode="edge"),
            helper.make_node("Conv", [f"padded{i}", f"dog{i}"], [f"r{i}"]),
            helper.make_node("Relu", [f"r{i}"], [f"p{i}"]),
            helper.make_node("Flatten", [f"p{i}"], [f"flat{i}"], axis=1),
            helper.make_node("ReduceMax", [f"flat{i}", "axis1"], [f"max{i}"], keepdims=1),
            helper.make_node("ReduceMean", [f"flat{i}", "axis1"], [f"mean{i}"], keepdims=1),
            helper.make_node("ArgMax", [f"flat{i}"], [f"peak{i}"], axis=1, keepdims=1),
        ]
        maxima.append(f"max{i}")
        means.append(f"mean{i}")
        peaks.append(f"peak{i}")
    inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"))
    nodes += [
        helper.make_node("Flatten", ["image"], ["flat_image"], axis=1),
        helper.make_node("ReduceMean", ["flat_image", "axis1"], ["image_mean"], keepdims=1),
        helper.make_node("Sub", ["flat_image", "image_mean"], ["centred"]),
        helper.make_node("Mul", ["centred", "centred"], ["squared"]),
        helper.make_node("ReduceMean", ["squared", "axis1"], ["variance"], keepdims=1),
        helper.make_node("Sqrt", ["variance"], ["image_std"]),
        helper.make_node(
            "Concat", [*maxima, *means, "image_mean", "image_std"], ["features"], axis=1
        ),
        helper.make_node("Concat", peaks, ["peak_index"], axis=1),
    ]
    return nodes, inits


def graph(head: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None) -> onnx.ModelProto:
    """The feature graph alone (``head`` None: outputs ``features``), or the whole model."""
    nodes, inits = feature_nodes()
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, INPUT, INPUT])
    outputs = [helper.make_tensor_value_info("peak_index", TensorProto.INT64, ["N", 2])]
    if head is None:
        outputs.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 6]))
    else:
        mean, scale, weights, bias = head
        inits += [
            numpy_helper.from_array(mean.astype(np.float32), "feature_mean"),
            numpy_helper.from_array(scale.astype(np.float32), "feature_scale"),
            numpy_helper.from_array(weights.astype(np.float32), "weights"),
            numpy_helper.from_array(bias.astype(np.float32), "bias"),
        ]
        nodes += [
            helper.make_node("Sub", ["features", "feature_mean"], ["shifted"]),
            helper.make_node("Div", ["shifted", "feature_scale"], ["standard"]),
            helper.make_node("Gemm", ["standard", "weights", "bias"], ["logits"]),
            helper.make_node("Sigmoid", ["logits"], ["probabilities"]),
        ]
        outputs.insert(
            0, helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])
        )
    g = helper.make_graph(nodes, "synthetic_opacity", [image], outputs, inits)
    model = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 18)], producer_name="fhirhub-train"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def dicom_inputs(seed: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Phantoms through DICOM and the plugin's pixel path: ([N, 1, 64, 64], labels [N, 2])."""
    images, labels = [], []
    for item in synthetic.phantom_set(seed, count):
        ds = synthetic.to_dataset(item, study_uid="1.2.826.0.1.1", series_uid="1.2.826.0.1.2")
        ds = pydicom.dcmread(io.BytesIO(synthetic.part10(ds)))
        images.append(pixels.model_input(ds, INPUT, INPUT)[None])
        labels.append(item.labels)
    return np.stack(images).astype(np.float32), np.array(labels, dtype=np.float64)


def run(model: onnx.ModelProto, images: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"image": images}), strict=True))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3) -> tuple[np.ndarray, float]:
    """Newton's method on the L2-regularised log-loss: deterministic, converges in ~10 steps."""
    design = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(design.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-design @ w))
        gradient = design.T @ (p - y) / len(y) + l2 * np.r_[w[:-1], 0]
        hessian = (design.T * (p * (1 - p))) @ design / len(y) + l2 * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return w[:-1], float(w[-1])


def auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half)."""
    positives, negatives = scores[truth == 1], scores[truth == 0]
    greater = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(positives) * len(negatives)))


def figures(probabilities: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> dict:
    predicted = probabilities >= threshold
    positive = truth == 1
    return {
        "auc": round(auc(probabilities, truth), 4),
        "sensitivity": round(float((predicted & positive).sum() / positive.sum()), 4),
        "specificity": round(float((~predicted & ~positive).sum() / (~positive).sum()), 4),
        "threshold": threshold,
        "positives": int(positive.sum()),
        "negatives": int((~positive).sum()),
    }


def main() -> None:
    train_x, train_y = dicom_inputs(TRAIN_SEED, TRAIN_COUNT)
    features = run(graph(None), train_x)["features"].astype(np.float64)
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-9
    standard = (features - mean) / scale
    weights = np.zeros((6, 2))
    bias = np.zeros(2)
    for label in range(2):
        weights[:, label], bias[label] = fit_logistic(standard, train_y[:, label])
    model = graph((mean, scale, weights, bias))
    test_x, test_y = dicom_inputs(TEST_SEED, TEST_COUNT)
    probabilities = run(model, test_x)["probabilities"].astype(np.float64)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "model.onnx").write_bytes(model.SerializeToString())
    card = json.loads((OUT / "card.json").read_text()) if (OUT / "card.json").exists() else {}
    card["validation"] = {
        "data": f"{TEST_COUNT} synthetic phantoms, seed {TEST_SEED} "
        "(fhirhub.plugins.imaging_ai.synthetic.phantom_set), through DICOM and the plugin's "
        "pixel path; none of them used in training",
        "seed": TEST_SEED,
        "count": TEST_COUNT,
        "labels": {
            label: figures(probabilities[:, i], test_y[:, i])
            for i, label in enumerate(synthetic.LABELS)
        },
        "mean_probability": [round(float(v), 6) for v in probabilities.mean(axis=0)],
        # the first images' outputs, recomputed by the tests: no silent drift
        "reference_outputs": [
            [round(float(v), 6) for v in row] for row in probabilities[:REFERENCE_COUNT]
        ],
    }
    (OUT / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card["validation"], indent=2))


if __name__ == "__main__":
    main()
