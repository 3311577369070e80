"""The content store a URL names (the backends import the interface, so the choice between
them lives here rather than beside the interface)."""

from __future__ import annotations

from pathlib import Path

from fhirhub.adapters.dicom.content_store import ContentStore


def open_content_store(url: str, default_root: Path, *, fsync: bool = False) -> ContentStore:
    """The store a URL names: empty for files under ``default_root``, ``file:///path`` for
    files elsewhere, ``s3://bucket[/prefix]?...`` for an S3-API object store."""
    from fhirhub.adapters.dicom.file_store import FileStore

    url = url.strip()
    if not url:
        return FileStore(default_root, fsync=fsync)
    scheme = url.partition("://")[0].lower()
    if scheme == "file":
        from urllib.parse import unquote, urlsplit

        return FileStore(Path(unquote(urlsplit(url).path)), fsync=fsync)
    if scheme == "s3":
        from fhirhub.adapters.dicom.s3_store import S3Store

        return S3Store.from_url(url)
    raise ValueError(
        f"DICOM object store URL must start with s3:// or file:// (got scheme {scheme!r})"
    )
