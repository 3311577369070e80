"""Content-addressed store for DICOM Part 10 files under ``FHIRHUB_DATA_DIR/dicom``.

A file lives at ``<root>/sha256/ab/cd/<hex digest>.dcm``: the same bytes always land on the
same path, so storing an instance twice writes nothing new and a path can never hold other
content. Writes go to a temporary file in the same directory, are fsync'ed and then renamed
into place (rename is atomic on POSIX), so a crash or a client dropping the association never
leaves a half-written file at a content path. An object store (S3 API) keyed by the same
digest is the scale-out replacement (DESIGN.md, "Scale-out").
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

HASH = "sha256"


class FileStore:
    """Put bytes, get them back by digest."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        (self.root / HASH).mkdir(parents=True, exist_ok=True)

    def path_for(self, digest: str) -> Path:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"Not a sha256 hex digest: {digest!r}")
        return self.root / HASH / digest[:2] / digest[2:4] / f"{digest}.dcm"

    def put(self, data: bytes) -> str:
        """Store ``data`` atomically; return its hex digest (the key)."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.path_for(digest)
        if path.exists():
            return digest
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".incoming-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(temp_name, path)
        except BaseException:
            try:
                os.unlink(temp_name)
            except FileNotFoundError:
                pass
            raise
        return digest

    def get(self, digest: str) -> bytes:
        return self.path_for(digest).read_bytes()

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).exists()

    def delete(self, digest: str) -> None:
        self.path_for(digest).unlink(missing_ok=True)

    def leftovers(self) -> list[Path]:
        """Temporary files of interrupted writes (none unless the process was killed)."""
        return sorted((self.root / HASH).rglob(".incoming-*"))
