"""DICOM node configuration: the plugin's settings (:class:`DicomSettings`), read with the
SDK's one settings mechanism: ``FHIRHUB_DICOM_<NAME>`` environment variables over the
``[plugin.dicom]`` table of the TOML file over the defaults::

    [plugin.dicom]
    port = 11112                   # FHIRHUB_DICOM_PORT; "off" disables, 0 = any free port
    aet = "FHIRHUB"                # FHIRHUB_DICOM_AET: the node's own AE title
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
    object_store = "s3://bucket/prefix?endpoint=http://127.0.0.1:9000"  # FHIRHUB_DICOM_STORE;
                            # default: files under FHIRHUB_DATA_DIR
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import AliasChoices, Field

from fhirhub.sdk import Hub, PluginSettings, Settings, plugin_settings

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


class DicomSettings(PluginSettings):
    """``[plugin.dicom]`` / ``FHIRHUB_DICOM_*``: see the module docstring."""

    port: str = str(DEFAULT_PORT)
    aet: str = "FHIRHUB"
    host: str = ""  # default: the hub's own host (loopback unless configured otherwise)
    tenants: dict[str, str] = {}
    allowed_aes: list[str] = []
    accept_unknown_aes: bool = False
    allowed_hosts: list[str] = []
    destinations: dict[str, Any] = {}
    pacs: dict[str, Any] | None = None
    pacs_allowed: list[str] = []
    max_associations: int = 32
    max_associations_per_peer: int = 8
    acse_timeout: float = 10
    idle_timeout: float = 30
    dimse_timeout: float = 60
    wait_for_fhir: bool = False
    fsync: bool = False
    object_store: str = Field(default="", validation_alias=AliasChoices("object_store", STORE_ENV))


def dicom_settings(settings: Hub | Settings) -> DicomSettings:
    found: DicomSettings = plugin_settings(settings, "dicom", DicomSettings)
    return found


def object_store_url(settings: Hub | Settings) -> str:
    """Where the Part 10 files go (:func:`.content_stores.open_content_store`):
    ``FHIRHUB_DICOM_STORE`` or ``[plugin.dicom] object_store``; empty means the file store
    under ``FHIRHUB_DATA_DIR/dicom/files``. May hold credentials: never log it."""
    return dicom_settings(settings).object_store.strip()


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
    def from_settings(cls, settings: Hub | Settings) -> DicomConfig:
        hub_settings = settings.settings if isinstance(settings, Hub) else settings
        section = dicom_settings(hub_settings)
        raw_port = section.port.strip().lower()
        port = None if raw_port in ("off", "", "none", "false") else int(raw_port)
        aet = section.aet.strip()
        if not aet or len(aet) > AE_TITLE_MAX or "\\" in aet:
            raise ValueError(f"FHIRHUB_DICOM_AET {aet!r}: 1-{AE_TITLE_MAX} characters, no '\\'")
        destinations = {
            name: RemoteNode.parse(name, value) for name, value in section.destinations.items()
        }
        pacs_value = section.pacs
        pacs = (
            RemoteNode.parse(str(pacs_value.get("aet", "PACS")), pacs_value) if pacs_value else None
        )
        return cls(
            port=port,
            aet=aet,
            host=section.host or hub_settings.host,  # like HTTP: loopback by default
            allowed_aes=tuple(section.allowed_aes),
            allowed_hosts=tuple(section.allowed_hosts),
            destinations=destinations,
            pacs=pacs,
            max_associations=section.max_associations,
            wait_for_fhir=section.wait_for_fhir,
            tenants=dict(section.tenants),
            accept_unknown_aes=section.accept_unknown_aes,
            default_tenant=hub_settings.default_tenant or "",
            pacs_allowed=tuple(section.pacs_allowed),
            max_associations_per_peer=section.max_associations_per_peer,
            acse_timeout=section.acse_timeout,
            idle_timeout=section.idle_timeout,
            dimse_timeout=section.dimse_timeout,
        )
