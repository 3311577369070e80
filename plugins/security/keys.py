"""The hub's own signing keys: access tokens and ID tokens are JWTs signed with them.

* an EC P-256 key (ES256, RFC 7518 §3.4) signs access tokens;
* an RSA 2048 key (RS256) signs OpenID Connect ID tokens: RS256 is the algorithm every
  OpenID relying party must accept (OpenID Connect Core §15.1), which SMART's
  ``sso-openid-connect`` capability relies on.

Both are generated on first use into ``<data_dir>/keys/`` (``signing-key.json``,
``id-token-key.json``) with mode 0600; API processes sharing a data directory share them.
Their public halves are published as one JWKS (RFC 7517 §5) at ``/plugins/security/jwks``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from joserfc.jwk import ECKey, RSAKey

ALGORITHM = "ES256"
ID_TOKEN_ALGORITHM = "RS256"
KEY_FILE = "signing-key.json"
ID_KEY_FILE = "id-token-key.json"

K = TypeVar("K", ECKey, RSAKey)


def _load_or_create(path: Path, kind: type[K], generate: Callable[[], K]) -> K:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        text = json.dumps(generate().as_dict(private=True))
        try:
            # O_EXCL: when two processes start together, one writes and both read its key.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
    data: dict[str, Any] = json.loads(path.read_text())
    key = kind.import_key(data)
    if not key.kid:
        key.ensure_kid()
    return key


def load_or_create_key(data_dir: Path) -> ECKey:
    """The access-token key (ES256)."""
    return _load_or_create(
        data_dir / "keys" / KEY_FILE,
        ECKey,
        lambda: ECKey.generate_key("P-256", private=True, auto_kid=True),
    )


def load_or_create_id_key(data_dir: Path) -> RSAKey:
    """The ID-token key (RS256)."""
    return _load_or_create(
        data_dir / "keys" / ID_KEY_FILE,
        RSAKey,
        lambda: RSAKey.generate_key(2048, private=True, auto_kid=True),
    )


def public_jwks(key: ECKey, id_key: RSAKey | None = None) -> dict[str, Any]:
    public = key.as_dict(private=False)
    public.update({"use": "sig", "alg": ALGORITHM})
    keys = [public]
    if id_key is not None:
        rsa = id_key.as_dict(private=False)
        rsa.update({"use": "sig", "alg": ID_TOKEN_ALGORITHM})
        keys.append(rsa)
    return {"keys": keys}
