"""The hub's own signing key: access tokens and ID tokens are JWTs signed with it.

An EC P-256 key (ES256, RFC 7518 §3.4) generated on first use into
``<data_dir>/keys/signing-key.json`` with mode 0600; API processes sharing a data directory
share it. Its public half is published as a JWKS (RFC 7517 §5) at
``/plugins/security/jwks``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey

ALGORITHM = "ES256"
KEY_FILE = "signing-key.json"


def load_or_create_key(data_dir: Path) -> ECKey:
    folder = data_dir / "keys"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / KEY_FILE
    if not path.exists():
        key = ECKey.generate_key("P-256", private=True, auto_kid=True)
        text = json.dumps(key.as_dict(private=True))
        try:
            # O_EXCL: when two processes start together, one writes and both read its key.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
    data: dict[str, Any] = json.loads(path.read_text())
    key = ECKey.import_key(data)
    if not key.kid:
        key.ensure_kid()
    return key


def public_jwks(key: ECKey) -> dict[str, Any]:
    public = key.as_dict(private=False)
    public.update({"use": "sig", "alg": ALGORITHM})
    return {"keys": [public]}
