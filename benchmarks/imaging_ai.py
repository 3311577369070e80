"""Imaging AI benchmark: per-image inference on CPU, and the time from the last C-STORE to the
preliminary report for a 100-image study, beside bare ONNX Runtime for the same model in the
same run.

    .venv/bin/python benchmarks/imaging_ai.py [--images 100] [--repeat 3] [--quiet-seconds 2]

1. Per image, in this process: bare ONNX Runtime (``InferenceSession.run`` on one prepared
   [1, 1, 64, 64] input, one thread) against the plugin's own path for one instance (parse the
   Part 10 bytes with pydicom, modality LUT, window, resample, predict).
2. End to end, the way users load the system: ``fhirhub serve`` started as its own process
   (SQLite, authentication off on loopback, the DICOM listener on a free port), a study of
   ``--images`` synthetic DX chest phantoms (256 x 256, 12 bit) sent by dcmtk's storescu on one
   association; the clock runs from storescu's exit (the last C-STORE answered) until
   ``GET /fhir/DiagnosticReport?_tag=urn:fhirhub:imaging-ai|report`` over HTTP shows the
   preliminary report. The study is analysed once no instance arrived for ``--quiet-seconds``,
   so that wait is part of the figure; it is also shown without it. The reference is bare
   ONNX Runtime on the same images (batched as the plugin batches them: 32 a call), measured
   in the same run.
Prints a Markdown table (recorded figures in docs/imaging_ai.md).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pydicom
from pydicom.uid import generate_uid

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fhirhub.plugins.imaging_ai import synthetic  # noqa: E402
from fhirhub.plugins.imaging_ai.models import SHIPPED, OnnxModel, load_card  # noqa: E402
from fhirhub.plugins.imaging_ai.pixels import model_input  # noqa: E402

TAG = "urn:fhirhub:imaging-ai|report"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def study_files(count: int, folder: Path, seed: int = 2027) -> list[bytes]:
    phantoms = synthetic.phantom_set(seed, count)
    study, series = generate_uid(), generate_uid()
    files = []
    for number, item in enumerate(phantoms, start=1):
        ds = synthetic.to_dataset(item, study_uid=study, series_uid=series, instance_number=number)
        data = synthetic.part10(ds)
        (folder / f"{number:04d}.dcm").write_bytes(data)
        files.append(data)
    return files


def per_image(files: list[bytes], model: OnnxModel) -> tuple[float, float]:
    """Median ms per image: bare ONNX Runtime, and the plugin's path from Part 10 bytes."""
    card = model.card
    session = model.session
    prepared = [
        model_input(pydicom.dcmread(io.BytesIO(d)), card.height, card.width)[None, None]
        for d in files
    ]
    bare, plugin = [], []
    for data, array in zip(files, prepared, strict=True):
        start = time.perf_counter()
        session.run(None, {card.input_name: array})
        bare.append(time.perf_counter() - start)
        start = time.perf_counter()
        ds = pydicom.dcmread(io.BytesIO(data))
        model.predict(model_input(ds, card.height, card.width)[None])
        plugin.append(time.perf_counter() - start)
    return statistics.median(bare) * 1000, statistics.median(plugin) * 1000


def bare_study(files: list[bytes], model: OnnxModel) -> float:
    """Seconds for bare ONNX Runtime on the study's prepared images, 32 a call."""
    card = model.card
    arrays = np.stack(
        [model_input(pydicom.dcmread(io.BytesIO(d)), card.height, card.width) for d in files]
    )[:, None]
    start = time.perf_counter()
    for i in range(0, len(arrays), 32):
        model.session.run(None, {card.input_name: arrays[i : i + 32]})
    return time.perf_counter() - start


def serve(work: Path, quiet: float) -> tuple[subprocess.Popen[bytes], int, int]:
    http_port, dicom_port = free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "FHIRHUB_DB": f"sqlite:///{work / 'hub.db'}",
        "FHIRHUB_DATA_DIR": str(work),
        "FHIRHUB_AUTH": "off",
        "FHIRHUB_DICOM_PORT": str(dicom_port),
        "FHIRHUB_DICOM_ACCEPT_UNKNOWN_AES": "true",
        "FHIRHUB_IMAGING_AI_QUIET_SECONDS": str(quiet),
        "FHIRHUB_IMAGING_AI_POLL_SECONDS": "0.2",
        "FHIRHUB_IMAGING_AI_DEMO": "false",
        "FHIRHUB_HL7_PORT": "off",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "fhirhub.core.cli", "serve", "--port", str(http_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(work / "serve.log", "wb"),  # noqa: SIM115
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=2).status_code < 500:
                return process, http_port, dicom_port
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"fhirhub serve did not start: {(work / 'serve.log').read_text()[-2000:]}")


def end_to_end(folder: Path, work: Path, quiet: float) -> float:
    process, http_port, dicom_port = serve(work, quiet)
    try:
        sent = subprocess.run(
            [
                "storescu",
                "-aet",
                "BENCHSCU",
                "-aec",
                "FHIRHUB",
                "+sd",
                "127.0.0.1",
                str(dicom_port),
                str(folder),
            ],
            env={**os.environ, "TCP_NODELAY": "1"},
            capture_output=True,
            timeout=600,
        )
        last_store = time.perf_counter()
        if sent.returncode != 0:
            raise RuntimeError(sent.stderr.decode(errors="replace")[-2000:])
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as client:
            while time.perf_counter() - last_store < 600:
                found = client.get("/fhir/DiagnosticReport", params={"_tag": TAG}).json()
                if found.get("entry"):
                    return time.perf_counter() - last_store
                time.sleep(0.05)
        raise RuntimeError("no preliminary report within 600 s")
    finally:
        process.terminate()
        process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quiet-seconds", type=float, default=2.0)
    args = parser.parse_args()
    if shutil.which("storescu") is None:
        raise SystemExit("dcmtk's storescu is needed (tools/install_system_deps.sh)")
    model = OnnxModel(load_card(SHIPPED))
    root = Path(tempfile.mkdtemp(prefix="imaging-ai-bench-"))
    try:
        folder = root / "study"
        folder.mkdir()
        files = study_files(args.images, folder)
        bare_ms, plugin_ms = per_image(files, model)
        rows = []
        for attempt in range(args.repeat):
            # a fresh study (new UIDs) and a fresh hub each time
            for path in folder.iterdir():
                path.unlink()
            files = study_files(args.images, folder, seed=3000 + attempt)
            work = root / f"hub-{attempt}"
            work.mkdir()
            reference = bare_study(files, model)
            elapsed = end_to_end(folder, work, args.quiet_seconds)
            rows.append((elapsed, reference))
        print(
            f"model {model.card.id} {model.card.version}, providers {model.session.get_providers()}"
        )
        print(
            "\n| per image | bare ONNX Runtime | plugin (parse + LUT + window + resample + predict) | ratio |"
        )
        print("|---|---|---|---|")
        print(f"| median ms | {bare_ms:.3f} | {plugin_ms:.3f} | {plugin_ms / bare_ms:.1f} |")
        print(
            f"\n| {args.images}-image study | last C-STORE -> preliminary report (s) | without the {args.quiet_seconds:g} s quiet wait (s) | bare ONNX Runtime, same images (s) | ratio (without wait / bare) |"
        )
        print("|---|---|---|---|---|")
        for elapsed, reference in rows:
            net = elapsed - args.quiet_seconds
            print(f"| run | {elapsed:.2f} | {net:.2f} | {reference:.3f} | {net / reference:.1f} |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
