"""One settings mechanism for the hub and every plugin, with one precedence.

Each value comes from the first of these sources that sets it:

1. command-line flags (keyword arguments of :func:`load_settings`, ``None`` meaning "not given"),
2. environment variables (``FHIRHUB_<NAME>``; for a plugin, ``FHIRHUB_<PLUGIN>_<NAME>``),
3. the TOML file (``FHIRHUB_CONFIG``, else ``./fhirhub.toml``): the ``[fhirhub]`` table (or
   top-level keys) for the hub, ``[plugin.<name>]`` for each plugin,
4. the defaults declared here (or in the plugin's settings class).

Plugins declare their settings as a subclass of :class:`PluginSettings` and read them with
``fhirhub.sdk.plugin_settings(hub, "name", TheirSettings)``; the same four sources apply, so
``[plugin.hl7] port = 2576`` and ``FHIRHUB_HL7_PORT=2576`` mean the same thing and the
environment wins.
"""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

#: The TOML file the next :class:`Settings` reads (set by :func:`load_settings`).
_config_file: ContextVar[Path | None] = ContextVar("fhirhub_config_file", default=None)


def default_data_dir() -> Path:
    return Path(os.environ.get("FHIRHUB_DATA_DIR", "data")).resolve()


def config_path(config_file: str | Path | None = None) -> Path:
    """The TOML file in use: an explicit path, ``FHIRHUB_CONFIG``, else ``./fhirhub.toml``."""
    return Path(config_file or os.environ.get("FHIRHUB_CONFIG") or "fhirhub.toml")


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed TOML document, or ``{}`` when the file does not exist."""
    if not path.is_file():
        return {}
    with path.open("rb") as handle:
        return tomllib.load(handle)


class _HubToml(PydanticBaseSettingsSource):
    """The hub's values from the TOML file: ``[fhirhub]`` (or top-level keys) and the raw
    ``[plugin.*]`` tables, which plugins read through their own settings classes."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        document = read_toml(_config_file.get() or config_path())
        values = dict(document.get("fhirhub", {k: v for k, v in document.items() if k != "plugin"}))
        if isinstance(document.get("plugin"), dict):
            values["plugin_config"] = document["plugin"]
        self._values = values

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._values.items() if k in self.settings_cls.model_fields}


class Settings(BaseSettings):
    """Every configuration value of the hub, documented in the README's settings table."""

    # Unknown keyword arguments are refused (a misspelt flag must not be ignored silently);
    # the environment and the TOML file contribute only the fields declared here.
    model_config = SettingsConfigDict(env_prefix="FHIRHUB_", extra="forbid")

    db: str = Field(default="", description="Database URL; default: SQLite under data_dir")
    db_pool_size: int = Field(
        default=10,
        ge=1,
        description="PostgreSQL connections each process keeps open while idle (busy peaks "
        "open up to 20 more, closed when returned)",
    )
    data_dir: Path = Field(default_factory=default_data_dir)
    base_url: str = Field(default="", description="Public base URL of /fhir (for links)")
    host: str = "127.0.0.1"
    port: int = 8080
    auth: str = Field(
        default="on", description="'on' (default) or 'off' (local development, loopback only)"
    )
    broker: str = Field(default="", description="Celery broker URL (redis:// or amqp://)")
    broker_queue: str = Field(default="fhirhub", description="Celery queue name")
    plugins: str = Field(
        default="", description="Comma list: enable only these; -x disables x, +x adds opt-in x"
    )
    max_body_bytes: int = 32 * 1024 * 1024
    max_bundle_entries: int = Field(
        default=10_000, description="Entries one batch or transaction Bundle may hold (413 past)"
    )
    http_header_timeout: float = Field(
        default=10.0,
        description="Seconds a client has to send a request's line and headers (then closed)",
    )
    validate_models: bool = Field(
        default=False, description="Also validate with the fhir.resources R4B models"
    )
    default_page_size: int = 20
    max_page_size: int = 1000
    worker_process: str = Field(
        default="auto",
        pattern="^(?i)(auto|on|off)$",
        description="'auto' (default), 'on' or 'off': `fhirhub serve` runs the CPU-heavy "
        "consumers (vitals scoring, subscription criteria, patient matching) in a second process; "
        "auto: with one "
        "API process on a machine of more than one core",
    )
    listeners: bool = Field(
        default=True,
        description="Start the adapters' network listeners (MLLP, DICOM) when the hub serves; "
        "commands, workers and tests turn them off",
    )
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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags (init) > environment > TOML > defaults: the order the module docstring states.
        return init_settings, env_settings, _HubToml(settings_cls)

    @property
    def database_url(self) -> str:
        if self.db:
            return self.db
        return f"sqlite:///{self.data_dir / 'fhirhub.db'}"

    @property
    def auth_enabled(self) -> bool:
        """Whether callers must authenticate (``FHIRHUB_AUTH`` other than off/false/0/no)."""
        return self.auth.strip().lower() not in ("off", "false", "0", "no")


def load_settings(config_file: str | Path | None = None, **flags: Any) -> Settings:
    """The hub's settings: ``flags`` (command-line values; ``None`` = not given) over the
    environment over the TOML file over the defaults."""
    token = _config_file.set(config_path(config_file))
    try:
        return Settings(**{name: value for name, value in flags.items() if value is not None})
    finally:
        _config_file.reset(token)


class PluginSettings(BaseSettings):
    """Base class of a plugin's settings: declare fields with defaults, then read them with
    :func:`plugin_settings`. Unknown keys in the plugin's TOML table are ignored. Built
    directly (``MySettings()``) it holds its defaults and keyword arguments only: the
    environment and the TOML file are read by :func:`plugin_settings`, which knows the
    plugin's name."""

    model_config = SettingsConfigDict(extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


_P = TypeVar("_P", bound=PluginSettings)


def env_prefix(plugin: str) -> str:
    """``FHIRHUB_<PLUGIN>_``: a plugin's environment variables (``-`` becomes ``_``)."""
    return f"FHIRHUB_{plugin.upper().replace('-', '_')}_"


def plugin_settings(settings: Settings, plugin: str, model: type[_P], /, **flags: Any) -> _P:
    """``model`` filled from ``flags`` > ``FHIRHUB_<PLUGIN>_*`` > ``[plugin.<plugin>]`` >
    its defaults (the same precedence as the hub's own settings)."""
    table = dict(settings.plugin_config.get(plugin, {}))
    prefix = env_prefix(plugin)

    class _Sourced(model):  # type: ignore[valid-type,misc]
        model_config = SettingsConfigDict(env_prefix=prefix, extra="ignore")

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (
                init_settings,
                EnvSettingsSource(settings_cls, env_prefix=prefix),
                InitSettingsSource(settings_cls, table),
            )

    _Sourced.__name__ = _Sourced.__qualname__ = model.__name__
    return _Sourced(**{name: value for name, value in flags.items() if value is not None})
