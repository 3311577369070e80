"""One settings object for the whole hub: ``FHIRHUB_*`` environment variables, an optional TOML
file (``FHIRHUB_CONFIG`` or ``./fhirhub.toml``), then CLI flags, later sources winning."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    return Path(os.environ.get("FHIRHUB_DATA_DIR", "data")).resolve()


class Settings(BaseSettings):
    """Every configuration value, documented in the README's settings table."""

    model_config = SettingsConfigDict(env_prefix="FHIRHUB_", extra="ignore")

    db: str = Field(default="", description="Database URL; default: SQLite under data_dir")
    data_dir: Path = Field(default_factory=default_data_dir)
    base_url: str = Field(default="", description="Public base URL of /fhir (for links)")
    host: str = "127.0.0.1"
    port: int = 8080
    auth: str = Field(
        default="on", description="'on' (default) or 'off' (local development, loopback only)"
    )
    broker: str = Field(default="", description="Celery broker URL (redis:// or amqp://)")
    broker_queue: str = Field(default="fhirhub", description="Celery queue name")
    plugins: str = Field(default="", description="Comma list: enable only these ('-x' disables x)")
    max_body_bytes: int = 32 * 1024 * 1024
    validate_models: bool = Field(
        default=False, description="Also validate with the fhir.resources R4B models"
    )
    default_page_size: int = 20
    max_page_size: int = 1000
    hl7_port: str = "2575"
    dicom_port: str = "11112"
    dicom_aet: str = "FHIRHUB"
    plugin_config: dict[str, dict[str, Any]] = Field(default_factory=dict)
    default_tenant: str = Field(
        default="",
        description="Organization id owning what adapters and loaders write without a tenant",
    )
    encrypt_at_rest: bool = Field(
        default=False, description="Seal resource content with per-tenant keys (AES-256-GCM)"
    )
    encryption_key_file: str = Field(
        default="", description="Master key file; default <data_dir>/keys/content-master.key"
    )
    cors_origins: str = Field(
        default="", description="Comma list of origins allowed to call the API from a browser"
    )
    rate_limit: str = Field(
        default="20000/minute",
        description="Requests per client address and per caller ('600/minute', 'off')",
    )
    rate_limit_redis: str = Field(
        default="", description="Redis URL for rate-limit buckets shared by API processes"
    )

    @property
    def database_url(self) -> str:
        if self.db:
            return self.db
        return f"sqlite:///{self.data_dir / 'fhirhub.db'}"


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from the environment, the TOML file, then explicit overrides."""
    path = Path(config_file or os.environ.get("FHIRHUB_CONFIG", "fhirhub.toml"))
    file_values: dict[str, Any] = {}
    if path.is_file():
        with path.open("rb") as handle:
            document = tomllib.load(handle)
        file_values = dict(document.get("fhirhub", document))
        if "plugin" in document:
            file_values["plugin_config"] = document["plugin"]
    env_settings = Settings()
    merged: dict[str, Any] = {}
    for name in Settings.model_fields:
        env_name = f"FHIRHUB_{name.upper()}"
        if env_name in os.environ:
            merged[name] = getattr(env_settings, name)
        elif name in file_values:
            merged[name] = file_values[name]
    merged.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**merged)
