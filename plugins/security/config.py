"""The security plugin's settings: ``[plugin.security]`` in ``fhirhub.toml``, overridden by
``FHIRHUB_*`` environment variables (the names the README's settings table lists).

They live here rather than in the core's settings object because only this plugin reads them;
another authentication plugin would bring its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

#: Environment variable -> setting name.
ENVIRONMENT = {
    "FHIRHUB_OIDC_ISSUER": "oidc_issuer",
    "FHIRHUB_OIDC_JWKS_URL": "oidc_jwks_url",
    "FHIRHUB_OIDC_AUDIENCE": "oidc_audience",
    "FHIRHUB_SMTP_URL": "smtp_url",
    "FHIRHUB_MAIL_FROM": "mail_from",
    "FHIRHUB_TOKEN_LIFETIME": "access_token_seconds",
    "FHIRHUB_ALLOWED_HOSTS": "allowed_hosts",
}


@dataclass(frozen=True)
class SecurityConfig:
    #: Access token lifetime. Short, because a JWT stays valid until it expires unless its
    #: ``jti`` is revoked; clients refresh.
    access_token_seconds: int = 900
    #: Refresh tokens: ``online_access`` (a working day) and ``offline_access``.
    online_refresh_seconds: int = 12 * 3600
    offline_refresh_seconds: int = 30 * 24 * 3600
    code_seconds: int = 60
    invitation_seconds: int = 7 * 24 * 3600
    #: SMART Backend Services: a client assertion may be valid for at most five minutes.
    max_assertion_seconds: int = 300
    #: Brute force: after this many failures per user name (per address: ``ip_free_failures``)
    #: each further attempt waits 2^(n - free) seconds, up to ``max_lockout_seconds``.
    user_free_failures: int = 5
    ip_free_failures: int = 20
    max_lockout_seconds: int = 900
    min_password_length: int = 10
    #: An external OpenID Connect issuer whose tokens are trusted (besides this hub's own).
    oidc_issuer: str = ""
    oidc_jwks_url: str = ""
    oidc_audience: str = ""
    oidc_jwks_cache_seconds: int = 300
    smtp_url: str = ""
    mail_from: str = "fhirhub@localhost"
    #: Without ``FHIRHUB_BASE_URL``, the host names (comma-separated) a request's ``Host`` may
    #: name besides loopback and ``--host``; others are refused (400) with auth on.
    allowed_hosts: str = ""

    def allowed_host_names(self) -> set[str]:
        return {h.strip().lower().strip("[]") for h in self.allowed_hosts.split(",") if h.strip()}

    @classmethod
    def load(cls, plugin_config: dict[str, Any]) -> SecurityConfig:
        values: dict[str, Any] = {
            k: v for k, v in plugin_config.items() if k in cls.__dataclass_fields__
        }
        for variable, name in ENVIRONMENT.items():
            if os.environ.get(variable):
                values[name] = os.environ[variable]
        for name, field in cls.__dataclass_fields__.items():
            if name in values and field.type == "int":
                values[name] = int(values[name])
        return cls(**values)
