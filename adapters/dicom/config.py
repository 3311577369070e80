"""DICOM node configuration, from the hub's one settings object.

``FHIRHUB_DICOM_PORT`` (default 11112, ``off`` disables the listener) and ``FHIRHUB_DICOM_AET``
(default ``FHIRHUB``) are core settings; the rest lives in the plugin's section of the TOML
file::

    [plugin.dicom]
    allowed_aes = ["MODALITY1", "VIEWER"]    # calling AE titles accepted (empty: any)
    allowed_hosts = ["127.0.0.1"]            # peer addresses accepted (empty: any)
    destinations = { VIEWER = "10.0.0.5:104" }  # C-MOVE destinations: AE -> host:port
    pacs = { aet = "ORTHANC", host = "pacs.example", port = 4242 }  # remote PACS (SCU)
    wait_for_fhir = false   # true: C-STORE answers only after the ImagingStudy committed
    fsync = false           # true: fsync each stored file (power-loss durability)
    tenants = { MODALITY1 = "org-a" }  # calling AE -> tenant of what it stores (C-STORE)
    object_store = "s3://bucket/prefix?endpoint=http://127.0.0.1:9000"  # default: files
                            # under FHIRHUB_DATA_DIR; FHIRHUB_DICOM_STORE when not set here
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

#: AE title: VR AE, at most 16 characters, no backslash or control characters (PS3.5 6.2).
AE_TITLE_MAX = 16
DEFAULT_PORT = 11112
#: Environment variable naming the object store when ``[plugin.dicom] object_store`` is unset.
STORE_ENV = "FHIRHUB_DICOM_STORE"


def object_store_url(settings: Any) -> str:
    """Where the Part 10 files go (:func:`.content_store.open_content_store`): the plugin
    section first, like ``port`` and ``aet`` here, then ``FHIRHUB_DICOM_STORE``; empty means
    the file store under ``FHIRHUB_DATA_DIR/dicom/files``. May hold credentials: never log it."""
    section: dict[str, Any] = settings.plugin_config.get("dicom", {})
    return str(section.get("object_store") or os.environ.get(STORE_ENV, "")).strip()


@dataclass(frozen=True)
class RemoteNode:
    """A peer Application Entity: AE title and network address."""

    aet: str
    host: str
    port: int

    @classmethod
    def parse(cls, aet: str, value: Any) -> RemoteNode:
        if isinstance(value, dict):
            return cls(str(value.get("aet", aet)), str(value["host"]), int(value["port"]))
        host, _, port = str(value).rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"DICOM destination {aet}: expected 'host:port', got {value!r}")
        return cls(aet, host, int(port))


@dataclass(frozen=True)
class DicomConfig:
    port: int | None  # None: listener off
    aet: str = "FHIRHUB"
    host: str = "0.0.0.0"
    allowed_aes: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    destinations: dict[str, RemoteNode] = field(default_factory=dict)
    pacs: RemoteNode | None = None
    max_associations: int = 32
    wait_for_fhir: bool = False  # C-STORE answers after the FHIR commit (slower; see recorder)
    tenants: dict[str, str] = field(default_factory=dict)  # calling AE -> tenant

    @classmethod
    def from_settings(cls, settings: Any) -> DicomConfig:
        section: dict[str, Any] = dict(settings.plugin_config.get("dicom", {}))
        raw_port = str(section.get("port", settings.dicom_port)).strip().lower()
        port = None if raw_port in ("off", "", "none", "false") else int(raw_port)
        aet = str(section.get("aet", settings.dicom_aet)).strip()
        if not aet or len(aet) > AE_TITLE_MAX or "\\" in aet:
            raise ValueError(f"FHIRHUB_DICOM_AET {aet!r}: 1-{AE_TITLE_MAX} characters, no '\\'")
        destinations = {
            name: RemoteNode.parse(name, value)
            for name, value in dict(section.get("destinations", {})).items()
        }
        pacs_value = section.get("pacs")
        pacs = (
            RemoteNode.parse(str(pacs_value.get("aet", "PACS")), pacs_value) if pacs_value else None
        )
        return cls(
            port=port,
            aet=aet,
            host=str(section.get("host", settings.host)),  # like HTTP: loopback by default
            allowed_aes=tuple(str(a) for a in section.get("allowed_aes", ())),
            allowed_hosts=tuple(str(h) for h in section.get("allowed_hosts", ())),
            destinations=destinations,
            pacs=pacs,
            max_associations=int(section.get("max_associations", 32)),
            wait_for_fhir=bool(section.get("wait_for_fhir", False)),
            tenants={str(k): str(v) for k, v in dict(section.get("tenants", {})).items()},
        )
