"""Content-addressed file store: same bytes same path, atomic writes, nothing half written."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from fhirhub.adapters.dicom.file_store import FileStore


def test_put_is_content_addressed_and_idempotent(tmp_path: Path, ct_small: Path) -> None:
    store = FileStore(tmp_path / "dicom")
    data = ct_small.read_bytes()
    digest = store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    path = store.path_for(digest)
    assert path == tmp_path / "dicom" / "sha256" / digest[:2] / digest[2:4] / f"{digest}.dcm"
    mtime = path.stat().st_mtime_ns
    assert store.put(data) == digest
    assert path.stat().st_mtime_ns == mtime  # not rewritten
    assert store.get(digest) == data
    assert store.leftovers() == []


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileStore(tmp_path / "dicom")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.put(b"DICM payload")
    digest = hashlib.sha256(b"DICM payload").hexdigest()
    assert not store.exists(digest)
    assert store.leftovers() == []


def test_rejects_non_digest_keys(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    with pytest.raises(ValueError):
        store.path_for("../../etc/passwd")
