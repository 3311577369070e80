"""The plugin's per-hub state: settings, the signing key, the database engine, caches."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from joserfc.jwk import ECKey, RSAKey

from fhirhub.plugins.security.config import SecurityConfig
from fhirhub.plugins.security.keys import load_or_create_id_key, load_or_create_key
from fhirhub.plugins.security.tables import ensure_tables
from fhirhub.sdk import FhirError, Hub, HubLocal

if TYPE_CHECKING:
    from sqlalchemy import Engine


@dataclass
class Security:
    hub: Hub
    config: SecurityConfig
    key: ECKey
    #: Signs ID tokens (RS256); see ``keys``.
    id_key: RSAKey
    #: jwks_uri -> (fetched at, key set document); for clients' and the OIDC issuer's keys.
    jwks_cache: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def engine(self) -> Engine:
        return self.hub.store.engine

    def write_options(self) -> dict[str, Any]:
        """``BEGIN IMMEDIATE`` on SQLite: read-then-write transactions (one-time codes,
        refresh rotation) must hold the write lock from their first read."""
        return {"sqlite_begin": "IMMEDIATE"} if self.hub.store.is_sqlite else {}

    def fhir_base(self, request: Any = None) -> str:
        """The FHIR base URL: ``FHIRHUB_BASE_URL`` or derived from the request. It is both the
        tokens' issuer and their audience (SMART's ``aud``), and invitation links and the
        discovery document name it, so with authentication on a request may only derive it
        from a host this hub knows (loopback, ``--host``, ``allowed_hosts``): a forged
        ``Host`` header must not choose the issuer or where an invitation link points."""
        if self.hub.base_url:
            return self.hub.base_url
        if request is None:
            return f"http://{self.hub.settings.host}:{self.hub.settings.port}/fhir"
        if self.hub.settings.auth_enabled and not self.host_allowed(request.url.hostname):
            raise FhirError(
                400,
                f"Unknown host {request.url.hostname!r}: set FHIRHUB_BASE_URL to this hub's "
                "public address (or list the host in FHIRHUB_ALLOWED_HOSTS)",
                code="invalid",
            )
        return f"{str(request.base_url).rstrip('/')}/fhir"

    def host_allowed(self, host: str | None) -> bool:
        if not host:
            return False
        host = host.lower().strip("[]")
        known = {"localhost", "127.0.0.1", "::1", *self.config.allowed_host_names()}
        if self.hub.settings.host not in ("0.0.0.0", "::", ""):
            known.add(self.hub.settings.host.lower().strip("[]"))
        return host in known

    def origin(self, request: Any = None) -> str:
        return self.fhir_base(request).rsplit("/fhir", 1)[0]


def security(hub: Hub) -> Security:
    """The plugin's state for ``hub`` (created, with its tables, on first use)."""

    def create() -> Security:
        from fhirhub.sdk import plugin_settings

        ensure_tables(hub.store.engine)
        return Security(
            hub=hub,
            config=SecurityConfig.load(plugin_settings(hub, "security")),
            key=load_or_create_key(hub.settings.data_dir),
            id_key=load_or_create_id_key(hub.settings.data_dir),
        )

    return _STATE.setdefault(hub, create)


_STATE: HubLocal[Security] = HubLocal("security")


def now() -> int:
    return int(time.time())


def random_token() -> str:
    """A high-entropy, URL-safe secret (256 bits)."""
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """What is stored of a random secret: its SHA-256 (enough for 256-bit random values;
    passwords, which are guessable, get argon2 instead)."""
    return hashlib.sha256(secret.encode()).hexdigest()
