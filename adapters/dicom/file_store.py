"""Content-addressed store for DICOM Part 10 files under ``FHIRHUB_DATA_DIR/dicom/files``.

A file lives at ``<root>/sha256/ab/cd/<hex digest>.dcm``: the same bytes always land on the
same path, so storing an instance twice writes nothing new and a path can never hold other
content. Writes go to a temporary file in the same directory, are fsync'ed and then renamed
into place (rename is atomic on POSIX), so a crash or a client dropping the association never
leaves a half-written file at a content path. :mod:`.s3_store` is the scale-out twin with the
same interface (:class:`.content_store.ContentStore`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from fhirhub.adapters.dicom.content_store import HASH, check_digest, digest_path


class FileStore:
    """Put bytes, get them back by digest."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        (self.root / HASH).mkdir(parents=True, exist_ok=True)

    def path_for(self, digest: str) -> Path:
        return self.root / digest_path(digest)

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

    def open(self, digest: str) -> BinaryIO:
        return self.path_for(digest).open("rb")

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).exists()

    def delete(self, digest: str) -> None:
        self.path_for(digest).unlink(missing_ok=True)

    def stored(self) -> Iterator[tuple[str, int]]:
        for path in sorted((self.root / HASH).rglob("*.dcm")):
            try:
                yield check_digest(path.stem), path.stat().st_size
            except (ValueError, FileNotFoundError):
                continue  # not ours, or deleted while listing

    def leftovers(self) -> list[Path]:
        """Temporary files of interrupted writes (none unless the process was killed)."""
        return sorted((self.root / HASH).rglob(".incoming-*"))

    def check(self) -> bool:
        return os.access(self.root / HASH, os.W_OK)

    def describe(self) -> str:
        return str(self.root)

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"FileStore({self.describe()!r})"
