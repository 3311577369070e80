"""C-STORE ingest benchmark: dcmtk's storescu -> fhirhub's DICOM node, against dcmtk's own
storescp receiving the same files in the same run.

    .venv/bin/python benchmarks/dicom_store.py [--instances 2000] [--associations 4]
        [--files mixed|ct] [--wait-for-fhir] [--object-store moto|s3://bucket/prefix?endpoint=...]
        [--tenant ORG]

The pydicom test files (CT, MR, CR from ``dicomdirtests`` plus ``CT_small``/``MR_small``) are
copied to ``--instances`` files with fresh SOP Instance UIDs, 100 instances per study and 20 per
series, so every C-STORE adds an instance to an ImagingStudy (the FHIR transaction is part of
what is measured). Runs: storescp (one association), fhirhub (one association), fhirhub
(``--associations`` concurrent storescu processes, fresh database). All dcmtk processes get
``TCP_NODELAY=1`` (no Nagle stalls). Also measured: QIDO-RS study search with 1,000 studies stored.

``--wait-for-fhir`` adds the same two fhirhub runs with ``[plugin.dicom] wait_for_fhir = true``
(C-STORE answers after the ImagingStudy commit). ``--object-store`` adds two runs storing the
files in an S3-API object store instead of under the data directory: an ``s3://`` URL (a fresh
bucket per run is created next to the one named), or ``moto`` for moto's S3 server started on
loopback as its own process (sharing the CPUs with everything else).
storescu calls as ``STORESCU``, which the node accepts through ``[plugin.dicom] allowed_aes``
(stored for no tenant), or with ``--tenant ORG`` through ``tenants = {STORESCU = "ORG"}``
(stored and written to FHIR for that tenant).
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
from typing import Any

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


def run_fhirhub(
    files: list[Path],
    work: Path,
    associations: int,
    *,
    wait_for_fhir: bool = False,
    object_store: str = "",
    tenant: str = "",
) -> tuple[float, dict[str, int]]:
    from fhirhub.adapters.dicom.archive import archive_for
    from fhirhub.adapters.dicom.config import DicomConfig
    from fhirhub.adapters.dicom.instance_index import ALL_TENANTS
    from fhirhub.adapters.dicom.scp import DicomNode
    from fhirhub.core.hub import build_hub
    from fhirhub.core.settings import Settings

    data = Path(tempfile.mkdtemp(prefix=f"hub-{associations}-", dir=work))
    settings = Settings(
        db=f"sqlite:///{data / 'hub.db'}",
        data_dir=data,
        plugin_config={
            "dicom": {
                "port": "0",
                "wait_for_fhir": wait_for_fhir,
                "object_store": object_store,
                # the calling AE storescu uses must be configured (unknown AEs are refused)
                **({"tenants": {"STORESCU": tenant}} if tenant else {"allowed_aes": ["STORESCU"]}),
            }
        },
    )
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
        acked = timed_storescu(port, node.config.aet, [g for g in groups if g])
        archive.drain(600)  # until every ImagingStudy is updated
        elapsed = time.perf_counter() - start
        counts = {
            "acked_ms": int(acked * 1000),
            "instances": archive.index.count(),
            "studies": len(archive.index.find(ALL_TENANTS, "STUDY", {})),
            "stored_objects": sum(1 for _ in archive.files.stored()),
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
    # The request carries no token: the hub's default (authorization on) would answer 401.
    hub = build_hub(
        Settings(db=f"sqlite:///{data / 'hub.db'}", data_dir=data, listeners=False, auth="off")
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


class MotoS3:
    """moto's S3 REST server (``moto_server``, from the test dependencies) on loopback."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)

    def url(self, bucket: str) -> str:
        return f"s3://bench:bench@{bucket}/dicom?endpoint=http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


def fresh_bucket(url: str, run: int) -> str:
    """The URL with a new bucket ``<bucket>-<pid>-<run>`` created on the same server."""
    from urllib.parse import urlsplit, urlunsplit

    from fhirhub.adapters.dicom.s3_store import S3Store

    parts = urlsplit(url)
    bucket = f"{parts.hostname}-{os.getpid()}-{run}"
    netloc = parts.netloc.rpartition("@")
    netloc_new = f"{netloc[0]}@{bucket}" if netloc[1] else bucket
    fresh = urlunsplit(parts._replace(netloc=netloc_new))
    S3Store.from_url(fresh)._client.make_bucket(bucket)
    return fresh


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
    parser.add_argument(
        "--wait-for-fhir",
        action="store_true",
        help="also measure wait_for_fhir = true (C-STORE answers after the FHIR commit)",
    )
    parser.add_argument(
        "--object-store",
        default="",
        help="also measure storing into S3: an s3:// URL, or 'moto' for a local moto server",
    )
    parser.add_argument(
        "--tenant",
        default="",
        help="store for this tenant (tenants = {STORESCU = TENANT}) instead of for none",
    )
    parser.add_argument(
        "--only-extra",
        action="store_true",
        help="skip the default-mode fhirhub runs (storescp is always measured)",
    )
    args = parser.parse_args()
    if shutil.which("storescu") is None:
        sys.exit("dcmtk is needed (tools/install_system_deps.sh)")
    import logging

    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    many = args.associations
    rows: list[tuple[str, int, float]] = []
    moto = MotoS3() if args.object_store == "moto" else None
    try:
        with tempfile.TemporaryDirectory(prefix="fhirhub-dicom-bench-") as tmp:
            work = Path(tmp)
            source = work / "files"
            source.mkdir()
            size = make_files(source, args.instances, args.files)
            files = sorted(source.iterdir())
            n = len(files)
            t_scp = run_storescp(files, work)
            runs: list[tuple[str, dict[str, Any]]] = []
            if not args.only_extra:
                runs.append(("fhirhub (files + catalogue + ImagingStudy)", {}))
            if args.wait_for_fhir:
                runs.append(
                    (
                        "fhirhub, wait_for_fhir = true (answer after the commit)",
                        {"wait_for_fhir": True},
                    )
                )
            if args.object_store:
                base_url = moto.url("dicom-bench") if moto else args.object_store
                runs.append(("fhirhub, files in S3 (object store)", {"object_store": base_url}))
            for number, (label, options) in enumerate(runs):
                for associations in (1, many):
                    run_options = dict(options)
                    if "object_store" in options:  # a fresh, empty bucket for each run
                        run_options["object_store"] = fresh_bucket(
                            options["object_store"], number * 100 + associations
                        )
                    elapsed, counts = run_fhirhub(
                        files, work, associations, tenant=args.tenant, **run_options
                    )
                    assert counts["instances"] == n and counts["fhir_instances"] == n, counts
                    assert counts["stored_objects"] == n, counts
                    rows.append((label, associations, elapsed))
            qido = None if args.skip_qido else qido_latency(work)
    finally:
        if moto is not None:
            moto.stop()
    print(
        f"{n} instances, {size / n / 1024:.1f} KiB average, {os.cpu_count()} CPUs, loopback, TCP_NODELAY=1"
    )
    if args.object_store:
        peer = "moto_server on loopback" if moto else "the given endpoint"
        print(f"S3 peer: {peer}")
    print()
    print("| receiver | associations | seconds | instances/s | ratio to storescp |")
    print("|---|---|---|---|---|")
    print(f"| dcmtk storescp (files only) | 1 | {t_scp:.2f} | {n / t_scp:.0f} | 1.00 |")
    for label, associations, elapsed in rows:
        print(
            f"| {label} | {associations} | {elapsed:.2f} | {n / elapsed:.0f} | "
            f"{t_scp / elapsed:.2f} |"
        )
    if qido is not None:
        print()
        print(f"QIDO-RS /studies with 1000 studies stored: median {qido:.1f} ms")


if __name__ == "__main__":
    main()
