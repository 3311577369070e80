"""A hub with two tenants, as the DICOM security tests meet it: the app served by uvicorn on a
loopback port (real HTTP), the DICOM listener started by the plugin like ``fhirhub serve``
does, and callers chosen per request by a header.

Tenants: ``org-a`` and ``org-b`` (their Organizations created as the security plugin's
``create_tenant`` does). Modalities: ``CT_A`` stores for org-a, ``CT_B`` for org-b
(``[plugin.dicom] tenants``). Callers (header ``X-Test-Caller``, built as :class:`Access`
objects so these tests check the enforcement layer, as tests/core/test_access_isolation.py
does): ``clinician-a``, ``clinician-b``, ``org-admin-a``, ``super``; patient-facing callers
are added per test once their Patient exists (:meth:`ServedHub.add_patient_caller`).
"""

from __future__ import annotations

import io
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pydicom
import uvicorn
from pydicom.dataset import Dataset

from fhirhub.adapters.dicom.archive import DicomArchive, archive_for
from fhirhub.adapters.dicom.plugin import dicom_node
from fhirhub.core.access import Access, parse_scopes
from fhirhub.core.hookspecs import hookimpl
from fhirhub.core.hub import Hub, build_hub
from fhirhub.core.settings import Settings
from fhirhub.plugins.security.tenants import create_tenant
from fhirhub.sdk import FhirError
from tests.adapters.dicom.conftest import TEST_FILES, dcmtk_env, free_port, need_dcmtk

NODE_AET = "FHIRHUB"
DICOMWEB = "/plugins/dicom/dicomweb"
TENANT_AES = {"CT_A": "org-a", "CT_B": "org-b"}


def base_callers() -> dict[str, Access]:
    user = parse_scopes("user/*.cruds")
    return {
        "clinician-a": Access(
            "user:clin-a", tenant="org-a", roles=frozenset({"clinician"}), scopes=user
        ),
        "clinician-b": Access(
            "user:clin-b", tenant="org-b", roles=frozenset({"clinician"}), scopes=user
        ),
        "org-admin-a": Access(
            "user:admin-a", tenant="org-a", roles=frozenset({"org_admin"}), scopes=user
        ),
        "super": Access("user:root", roles=frozenset({"super_admin"}), scopes=user),
    }


class HeaderCallers:
    """``authenticate_request``: ``X-Test-Caller: name`` -> the named :class:`Access`."""

    def __init__(self, callers: dict[str, Access]) -> None:
        self.callers = callers

    @hookimpl
    def authenticate_request(self, request: Any, hub: Hub) -> Access | None:
        name = request.headers.get("x-test-caller")
        return self.callers.get(name) if name else None


@dataclass
class ServedHub:
    hub: Hub
    base: str  # http://127.0.0.1:<port>
    dicom_port: int
    callers: dict[str, Access] = field(default_factory=dict)

    @property
    def archive(self) -> DicomArchive:
        return archive_for(self.hub)

    def http(self, caller: str | None) -> httpx.Client:
        headers = {"X-Test-Caller": caller} if caller else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=60)

    def dicomweb(self, caller: str, path: str, **params: Any) -> httpx.Response:
        with self.http(caller) as client:
            return client.get(f"{DICOMWEB}{path}", params=params)

    def add_patient_caller(self, name: str, tenant: str, patient: str, scopes: str) -> None:
        """A patient-facing app of ``tenant`` launched for Patient ``patient``."""
        self.callers[name] = Access(
            f"user:{name}",
            tenant=tenant,
            roles=frozenset({"patient"}),
            scopes=parse_scopes(scopes),
            patient=patient,
        )


def hub_settings(db: str, data_dir: Path, dicom_port: int, **dicom: Any) -> Settings:
    return Settings(
        db=db,
        data_dir=data_dir,
        auth="on",
        plugin_config={
            "hl7": {"port": "off"},
            "dicom": {
                "port": str(dicom_port),
                "aet": NODE_AET,
                "tenants": dict(TENANT_AES),
                **dicom,
            },
        },
    )


@contextmanager
def served_hub(db: str, data_dir: Path, **dicom: Any) -> Iterator[ServedHub]:
    """The hub of the module docstring, served until the block ends; ``dicom`` adds to (or
    replaces) its ``[plugin.dicom]`` settings."""
    from fhirhub.core.http.app import create_app

    dicom_port, http_port = free_port(), free_port()
    callers = base_callers()
    hub = build_hub(
        hub_settings(db, data_dir, dicom_port, **dicom), extra_plugins=[HeaderCallers(callers)]
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(hub=hub), host="127.0.0.1", port=http_port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        assert dicom_node(hub) is not None, "the DICOM listener did not start"
        for tenant in ("org-a", "org-b"):
            try:
                create_tenant(hub, tenant, f"Hospital {tenant[-1].upper()}")
            except FhirError as error:  # a second hub on the same database: it exists (409)
                if error.status != 409:
                    raise
        yield ServedHub(hub, f"http://127.0.0.1:{http_port}", dicom_port, callers)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        hub.close()


# -- test data -----------------------------------------------------------------------------


def instance(
    source: str = "CT_small.dcm",
    *,
    study: str | None = None,
    sop: str | None = None,
    patient_id: str | None = None,
    **attributes: Any,
) -> Dataset:
    """A pydicom test file with fresh (or given) Study/Series/SOP Instance UIDs."""
    ds = pydicom.dcmread(TEST_FILES / source)
    ds.StudyInstanceUID = study or pydicom.uid.generate_uid()
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = sop or pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if patient_id is not None:
        ds.PatientID = patient_id
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def part10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write_files(folder: Path, datasets: list[Dataset]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        path.write_bytes(part10(ds))
        paths.append(path)
    return paths


def dcmtk(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """One dcmtk tool run, with TCP_NODELAY=1."""
    need_dcmtk()
    return subprocess.run(
        list(args),
        env=dcmtk_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        errors="replace",
    )


def storescu(served: ServedHub, aet: str, paths: list[Path]) -> subprocess.CompletedProcess[str]:
    """dcmtk's storescu as modality ``aet``; waits until the archive recorded everything."""
    sent = dcmtk(
        "storescu",
        "-aet",
        aet,
        "-aec",
        NODE_AET,
        "127.0.0.1",
        str(served.dicom_port),
        *[str(p) for p in paths],
    )
    assert served.archive.drain()
    return sent


def multipart(files: list[bytes]) -> tuple[bytes, str]:
    """A STOW-RS body (PS3.18 10.5: multipart/related; type="application/dicom")."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
        for data in files
    )
    body += f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'
