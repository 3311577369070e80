"""The server's Ed25519 key that signs chain heads, and the public keys trusted to verify them.

The private key is a file holding the 32-byte seed in hex: ``FHIRHUB_SIGNING_KEY_FILE`` (or
``signing_key_file`` in ``[plugin.integrity]``), by default ``<data dir>/keys/chain-signing.key``.
It is generated on first use with mode 0600 in a 0700 folder; several processes starting at once
end up with the same key (the file is created with an atomic link, the losers read it). Its
public half is written next to it as ``<name>.pub``.

Verification trusts the key file's public key and every ``*.pub`` file in the same folder, so
after a key rotation the old public key, kept there, still verifies the heads it signed; on a
PostgreSQL deployment with several hosts, give them one key file or copy each host's ``.pub``.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey, VerifyKey

from fhirhub.sdk import chain_key_id as key_id

log = logging.getLogger("fhirhub.integrity")

DEFAULT_KEY_NAME = "chain-signing.key"


def _setting(settings: Any, name: str) -> str | None:
    """``FHIRHUB_<NAME>`` from the environment, else ``[plugin.integrity] name`` in the TOML."""
    value = os.environ.get(f"FHIRHUB_{name.upper()}")
    if value:
        return value
    configured = settings.plugin_config.get("integrity", {}).get(name)
    return str(configured) if configured not in (None, "") else None


def key_file(settings: Any) -> Path:
    configured = _setting(settings, "signing_key_file")
    if configured:
        return Path(configured).expanduser().resolve()
    return Path(settings.data_dir) / "keys" / DEFAULT_KEY_NAME


def sign_interval(settings: Any) -> float:
    """Seconds between periodic signatures of the chain head (0 disables them)."""
    configured = _setting(settings, "chain_sign_interval")
    return float(configured) if configured is not None else 60.0


def anchor_file(settings: Any) -> Path | None:
    """Where signed heads are anchored outside the database (None: ``off``)."""
    configured = _setting(settings, "anchor_file")
    if configured is not None and configured.lower() in ("off", "none", "false"):
        return None
    if configured:
        return Path(configured).expanduser().resolve()
    return Path(settings.data_dir) / "chain-anchor.ndjson"


def witness_url(settings: Any) -> str | None:
    """An external witness that each signed head is POSTed to (None: no witness)."""
    return _setting(settings, "witness_url")


def max_unsigned_age(settings: Any) -> float | None:
    """Seconds an entry may be in the log without a signed head covering it before ``verify``
    reports it (default: twice the signing interval plus a minute; None when signing is off
    and nothing is configured)."""
    configured = _setting(settings, "max_unsigned_age")
    if configured is not None:
        value = float(configured)
        return value if value > 0 else None
    interval = sign_interval(settings)
    return 2 * interval + 60 if interval > 0 else None


def _read_key(path: Path) -> SigningKey:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("Signing key %s is readable by others (mode %o); chmod 600 it", path, mode)
    text = path.read_text().strip()
    try:
        return SigningKey(bytes.fromhex(text))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} does not hold a 32-byte Ed25519 seed in hex") from exc


def load_signing_key(settings: Any, *, create: bool = True) -> SigningKey | None:
    """The server's signing key, generated on first use when ``create`` (else None if absent)."""
    path = key_file(settings)
    if path.exists():
        return _read_key(path)
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = SigningKey.generate()
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".key-")  # mode 0600
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(bytes(key).hex() + "\n")
        os.link(temporary, path)  # atomic; fails if another process created the key first
    except FileExistsError:
        return _read_key(path)
    finally:
        os.unlink(temporary)
    public = path.with_suffix(".pub")
    public.write_text(bytes(key.verify_key).hex() + "\n")
    log.info("Generated the chain signing key %s (key id %s)", path, key_id(key.verify_key))
    return key


def trusted_keys(settings: Any) -> dict[str, VerifyKey]:
    """Public keys by key id: the signing key's and every ``*.pub`` beside it."""
    keys: dict[str, VerifyKey] = {}
    path = key_file(settings)
    if path.exists():
        verify_key = _read_key(path).verify_key
        keys[key_id(verify_key)] = verify_key
    if path.parent.is_dir():
        for public in sorted(path.parent.glob("*.pub")):
            try:
                verify_key = VerifyKey(bytes.fromhex(public.read_text().strip()))
            except (ValueError, TypeError):
                log.warning("Ignoring %s: not an Ed25519 public key in hex", public)
                continue
            keys[key_id(verify_key)] = verify_key
    return keys
