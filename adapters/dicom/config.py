"""DICOM node configuration, from the hub's one settings object.

``FHIRHUB_DICOM_PORT`` (default 11112, ``off`` disables the listener) and ``FHIRHUB_DICOM_AET``
(default ``FHIRHUB``) are core settings; the rest lives in the plugin's section of the TOML
file::

    [plugin.dicom]
    tenants = { CT_WARD_A = "org-a", PACS_B = "org-b", ROUTER = "*" }  # calling AE -> tenant
    allowed_aes = ["VIEWER"]       # further AEs accepted, acting for FHIRHUB_DEFAULT_TENANT
    accept_unknown_aes = false     # true: any other AE too, as for allowed_aes
    allowed_hosts = ["127.0.0.1"]  # peer addresses accepted (empty: any)
    destinations = { VIEWER = "10.0.0.5:104" }  # C-MOVE destinations: AE -> host:port
    pacs = { aet = "ORTHANC", host = "pacs.example", port = 4242 }  # remote PACS (SCU)
    pacs_allowed = ["pacs-b.example:104", "10.0.0.7"]  # Endpoint targets $pacs-* may reach
    max_associations = 32          # at once, all peers together
    max_associations_per_peer = 8  # at once, from one peer address
    acse_timeout = 10              # s: A-ASSOCIATE-RQ after connecting, A-RELEASE replies
    idle_timeout = 30              # s without a PDU on an association: aborted
    dimse_timeout = 60             # s: waiting for a DIMSE message (C-GET/C-MOVE peers)
    wait_for_fhir = false   # true: C-STORE answers only after the ImagingStudy committed
    fsync = false           # true: fsync each stored file (power-loss durability)
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
#: ``tenants`` value for a node trusted with every tenant's instances (a hub-wide router).
ALL_TENANTS = "*"


class UnknownAE(LookupError):
    """A calling AE title the node does not accept (PS3.8 9.3.4: A-ASSOCIATE-RJ, permanent,
    "calling AE title not recognized")."""


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
    tenants: dict[str, str] = field(default_factory=dict)  # calling AE -> tenant ("*": all)
    accept_unknown_aes: bool = False
    default_tenant: str = ""  # FHIRHUB_DEFAULT_TENANT: what accepted, unmapped AEs act for
    pacs_allowed: tuple[str, ...] = ()  # "host:port" or "host": Endpoint targets allowed
    max_associations_per_peer: int = 8
    acse_timeout: float = 10
    idle_timeout: float = 30
    dimse_timeout: float = 60

    def tenant_of_ae(self, calling_aet: str) -> str | None:
        """The tenant a calling AE acts for: its ``tenants`` entry (``"*"``: None, every
        tenant), else, for an AE in ``allowed_aes`` or with ``accept_unknown_aes``, the
        default tenant ("" where none is set: the instances no tenant owns). Raises
        :class:`UnknownAE` for any other AE: refused at association."""
        aet = calling_aet.strip()
        tenant = self.tenants.get(aet)
        if tenant is not None:
            return None if tenant == ALL_TENANTS else tenant
        if aet in self.allowed_aes or self.accept_unknown_aes:
            return self.default_tenant
        raise UnknownAE(f"Calling AE title {aet!r} is not configured ([plugin.dicom] tenants)")

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
            accept_unknown_aes=bool(section.get("accept_unknown_aes", False)),
            default_tenant=str(getattr(settings, "default_tenant", None) or ""),
            pacs_allowed=tuple(str(t) for t in section.get("pacs_allowed", ())),
            max_associations_per_peer=int(section.get("max_associations_per_peer", 8)),
            acse_timeout=float(section.get("acse_timeout", 10)),
            idle_timeout=float(section.get("idle_timeout", 30)),
            dimse_timeout=float(section.get("dimse_timeout", 60)),
        )
