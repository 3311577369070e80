"""C-STORE ingest benchmark: dcmtk's storescu -> fhirhub's DICOM node, against dcmtk's own
storescp receiving the same files in the same run.

    .venv/bin/python benchmarks/dicom_store.py [--instances 2000] [--associations 4]

The pydicom test files (CT, MR, CR from ``dicomdirtests`` plus ``CT_small``/``MR_small``) are
copied to ``--instances`` files with fresh SOP Instance UIDs, 100 instances per study and 20 per
series, so every C-STORE adds an instance to an ImagingStudy (the FHIR transaction is part of
what is measured). Runs: storescp (one association), fhirhub (one association), fhirhub
(``--associations`` concurrent storescu processes, fresh database). All dcmtk processes get
``TCP_NODELAY=1`` (DESIGN.md). Also measured: QIDO-RS study search with 1,000 studies stored.
Prints a Markdown table (see docs/dicom.md for recorded figures).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path

import orjson
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ENV = {**os.environ, "TCP_NODELAY": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def source_files(kind: str = "mixed") -> list[Path]:
    root = Path(str(get_testdata_file("CT_small.dcm"))).parent
    files = [root / "CT_small.dcm", root / "MR_small.dcm"]
    if kind == "ct":  # the reference: 39 KB CT instances
        return files[:1]
    files += sorted(
        p
        for p in (root / "dicomdirtests").rglob("*")
        if p.is_file() and not p.name.startswith(("DICOMDIR", "README"))
    )
    return files


def make_files(
    target: Path, count: int, kind: str, per_study: int = 100, per_series: int = 20
) -> int:
    sources = [pydicom.dcmread(p) for p in source_files(kind)]
    total_bytes = 0
    study_uid = series_uid = ""
    for n in range(count):
        ds = sources[n % len(sources)].copy()
        if n % per_study == 0:
            study_uid = generate_uid()
        if n % per_series == 0:
            series_uid = generate_uid()
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID = f"BENCH{n // per_study:04d}"
        ds.InstanceNumber = n % per_series + 1
        path = target / f"{n:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        total_bytes += path.stat().st_size
    return total_bytes


def storescu(port: int, aet: str, files: list[Path]) -> subprocess.Popen[bytes]:
    # storescu takes files on the command line; a scanned folder keeps the argv short
    folder = Path(tempfile.mkdtemp(prefix="storescu-"))
    for path in files:
        os.symlink(path, folder / path.name)
    return subprocess.Popen(
        ["storescu", "-aet", "STORESCU", "-aec", aet, "+sd", "127.0.0.1", str(port), str(folder)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def timed_storescu(port: int, aet: str, groups: list[list[Path]]) -> float:
    start = time.perf_counter()
    processes = [storescu(port, aet, group) for group in groups]
    for process in processes:
        _out, err = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"storescu failed: {err.decode(errors='replace')[-2000:]}")
    return time.perf_counter() - start


def run_storescp(files: list[Path], work: Path) -> float:
    port = free_port()
    out = work / "storescp-out"
    out.mkdir()
    server = subprocess.Popen(
        ["storescp", "-aet", "STORESCP", "-od", str(out), str(port)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    try:
        return timed_storescu(port, "STORESCP", [files])
    finally:
        server.terminate()
        server.wait()


def run_fhirhub(files: list[Path], work: Path, associations: int) -> tuple[float, dict[str, int]]:
    from fhirhub.adapters.dicom.archive import archive_for
    from fhirhub.adapters.dicom.config import DicomConfig
    from fhirhub.adapters.dicom.scp import DicomNode
    from fhirhub.core.hub import build_hub
    from fhirhub.core.settings import Settings

    data = work / f"hub-{associations}"
    data.mkdir()
    settings = Settings(db=f"sqlite:///{data / 'hub.db'}", data_dir=data, dicom_port="0")  # type: ignore[call-arg]
    hub = build_hub(settings)
    archive = archive_for(hub)
    node = DicomNode(archive, DicomConfig.from_settings(settings))
    port = node.start(host="127.0.0.1", port=0)
    try:
        per_study = 100
        studies = [files[i : i + per_study] for i in range(0, len(files), per_study)]
        groups: list[list[Path]] = [[] for _ in range(associations)]
        for index, study in enumerate(studies):  # whole studies per association
            groups[index % associations].extend(study)
        start = time.perf_counter()
        acked = timed_storescu(port, settings.dicom_aet, [g for g in groups if g])
        archive.drain(600)  # until every ImagingStudy is updated
        elapsed = time.perf_counter() - start
        counts = {
            "acked_ms": int(acked * 1000),
            "instances": archive.index.count(),
            "studies": len(archive.index.find("STUDY", {})),
        }
        with hub.store.read() as conn:
            counts["fhir_instances"] = sum(
                int(orjson.loads(row[0])["numberOfInstances"])
                for row in conn.exec_driver_sql(
                    "SELECT content FROM resource_current WHERE resource_type = 'ImagingStudy'"
                )
            )
        return elapsed, counts
    finally:
        node.stop()
        archive.close()
        hub.store.engine.dispose()


def qido_latency(work: Path, studies: int = 1000) -> float:
    """Median QIDO-RS /studies latency (ms) over HTTP in-process with ``studies`` stored."""
    from fastapi.testclient import TestClient

    from fhirhub.adapters.dicom.archive import archive_for
    from fhirhub.core.http.app import create_app
    from fhirhub.core.hub import build_hub
    from fhirhub.core.settings import Settings

    data = work / "qido"
    data.mkdir()
    hub = build_hub(
        Settings(db=f"sqlite:///{data / 'hub.db'}", data_dir=data, dicom_port="off")  # type: ignore[call-arg]
    )
    archive = archive_for(hub)
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for n in range(studies):
        ds = template.copy()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID = f"Q{n:05d}"
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        archive.store_part10(buffer.getvalue())
    with TestClient(create_app(hub=hub)) as client:
        timings = []
        for _ in range(30):
            start = time.perf_counter()
            response = client.get("/plugins/dicom/dicomweb/studies")
            timings.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200 and len(response.json()) == studies
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--associations", type=int, default=4)
    parser.add_argument("--skip-qido", action="store_true")
    parser.add_argument(
        "--files",
        choices=("mixed", "ct"),
        default="mixed",
        help="mixed test files or CT_small only",
    )
    args = parser.parse_args()
    if shutil.which("storescu") is None:
        sys.exit("dcmtk is needed (tools/install_system_deps.sh)")
    import logging

    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="fhirhub-dicom-bench-") as tmp:
        work = Path(tmp)
        source = work / "files"
        source.mkdir()
        size = make_files(source, args.instances, args.files)
        files = sorted(source.iterdir())
        n = len(files)
        t_scp = run_storescp(files, work)
        t_one, counts_one = run_fhirhub(files, work, 1)
        t_many, counts_many = run_fhirhub(files, work, args.associations)
        for counts in (counts_one, counts_many):
            assert counts["instances"] == n and counts["fhir_instances"] == n, counts
        qido = None if args.skip_qido else qido_latency(work)
    print(
        f"{n} instances, {size / n / 1024:.1f} KiB average, {os.cpu_count()} CPUs, loopback, TCP_NODELAY=1"
    )
    print()
    print("| receiver | associations | seconds | instances/s | ratio to storescp |")
    print("|---|---|---|---|---|")
    print(f"| dcmtk storescp (files only) | 1 | {t_scp:.2f} | {n / t_scp:.0f} | 1.00 |")
    print(
        f"| fhirhub (files + catalogue + ImagingStudy) | 1 | {t_one:.2f} | {n / t_one:.0f} | "
        f"{t_scp / t_one:.2f} |"
    )
    print(
        f"| fhirhub (files + catalogue + ImagingStudy) | {args.associations} | {t_many:.2f} | "
        f"{n / t_many:.0f} | {t_scp / t_many:.2f} |"
    )
    if qido is not None:
        print()
        print(f"QIDO-RS /studies with 1000 studies stored: median {qido:.1f} ms")


if __name__ == "__main__":
    main()
