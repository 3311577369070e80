"""``[plugin.oscar]``: where the clinic's OSCAR is and how to reach it.

Read with :func:`fhirhub.sdk.plugin_settings` (flags > ``FHIRHUB_OSCAR_*`` > TOML > defaults).
With no source configured the plugin loads and does nothing.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from fhirhub.sdk import Hub, PluginSettings, plugin_settings

PLUGIN = "oscar"
SourceKind = Literal["database", "rest", "soap", "demo"]


class OscarSettings(PluginSettings):
    #: ``database`` | ``rest`` | ``soap`` | ``demo``; empty: the first configured of
    #: database, rest (with SOAP for incremental reads when ``soap_username`` is set).
    source: str = ""
    #: SQLAlchemy URL of a read-only replica: ``mysql+pymysql://user:pass@host:3306/oscar``.
    database: str = ""
    #: Same as ``database`` (``FHIRHUB_OSCAR_DB``).
    db: str = ""
    #: OSCAR's base URL, e.g. ``https://clinic.example/oscar`` (REST under ``/ws/services``,
    #: SOAP under ``/ws``).
    url: str = ""
    consumer_key: str = ""
    consumer_secret: str = ""
    token: str = ""
    token_secret: str = ""
    #: An OSCAR user for the SOAP services (``LoginService`` then WS-Security UsernameToken).
    soap_username: str = ""
    soap_password: str = ""
    #: The tenant (Organization id) the clinic's data belongs to; None: no tenant label.
    tenant: str | None = None
    #: Names this OSCAR in ``meta.source``, identifiers and ids; default from url/database.
    instance: str = ""
    #: The clinic's time zone: OSCAR stores local times without an offset.
    timezone: str = "America/Vancouver"
    #: Seconds between periodic syncs while the hub serves; 0 turns the schedule off.
    interval_s: float = 300.0
    #: Records per FHIR transaction (and per read from OSCAR). Larger pages write each hot
    #: index page of the store fewer times: 2,000 synced ~25% faster than 500 (docs/oscar.md).
    batch_size: int = 2000
    #: Send Appointments and vital-sign Observations booked in fhirhub to OSCAR.
    writeback: bool = True
    #: OSCAR provider_no recorded on a measurement sent without a linked performer.
    writeback_provider_no: str = ""
    #: Attempts per write-back before it is marked failed (visible in status and the UI).
    writeback_attempts: int = 5
    #: HTTP timeout for the REST and SOAP sources, seconds.
    timeout_s: float = 30.0

    @property
    def database_url(self) -> str:
        return self.database or self.db

    @property
    def source_kind(self) -> SourceKind | None:
        """The source to read, or None when nothing is configured."""
        chosen = self.source.strip().lower()
        if chosen in ("database", "rest", "soap", "demo"):
            return chosen  # type: ignore[return-value]
        if chosen:
            raise ValueError(
                f"[plugin.oscar] source {self.source!r}: use database, rest, soap or demo"
            )
        if self.database_url:
            return "database"
        if self.url and self.consumer_key:
            return "rest"
        if self.url and self.soap_username:
            return "soap"
        return None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def instance_name(self) -> str:
        """A stable, human-readable name of this OSCAR (never containing credentials)."""
        if self.instance:
            name = self.instance
        elif self.source_kind == "demo":
            name = "demo-clinic"
        elif self.database_url:
            parts = urlsplit(self.database_url)
            name = f"{parts.hostname or 'localhost'}.{parts.port or 3306}{parts.path}"
        else:
            parts = urlsplit(self.url)
            name = f"{parts.hostname or 'oscar'}{parts.path}".rstrip("/")
        return re.sub(r"[^A-Za-z0-9._/-]+", "-", name).strip("-/") or "oscar"

    @property
    def source_uri(self) -> str:
        """``meta.source`` of everything read from this OSCAR (FHIR R4 §2.30.0.1: a URI
        naming the source system)."""
        return f"urn:fhirhub:oscar:{self.instance_name}"

    @property
    def id_prefix(self) -> str:
        """A short prefix of the FHIR ids derived from this instance (``o`` + 8 hex digits),
        so that two OSCARs' ``demographic_no = 1`` never share a resource."""
        return "o" + hashlib.sha256(self.instance_name.encode()).hexdigest()[:8]


def load(hub: Hub, **flags: object) -> OscarSettings:
    settings: OscarSettings = plugin_settings(hub, PLUGIN, OscarSettings, **flags)
    return settings
