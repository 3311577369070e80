"""Stored versions: what one row of the version log (or of the current projection) holds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


#: The last whole second formatted by :func:`format_instant` (writes come in bursts within
#: one second, and ``strftime`` was a visible part of writing a small resource).
_last_second: tuple[int, str] = (-1, "")


def format_instant(microseconds: int) -> str:
    """An ``instant`` as FHIR writes it (``2026-11-23T14:50:00.123456Z``); integer arithmetic,
    so the microseconds are exact."""
    global _last_second
    seconds, fraction = divmod(microseconds, 1_000_000)
    cached_second, prefix = _last_second
    if seconds != cached_second:
        prefix = (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second = (seconds, prefix)
    return f"{prefix}.{fraction:06d}Z"


def http_date(microseconds: int) -> str:
    """RFC 7231 IMF-fixdate for ``Last-Modified``."""
    moment = datetime.fromtimestamp(microseconds // 1_000_000, tz=UTC)
    return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")


def to_microseconds(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """One version of a resource: a log row, or the current row of the projection."""

    resource_type: str
    resource_id: str
    version_id: int
    last_updated: int  # microseconds since epoch, UTC
    deleted: bool
    content: bytes | None  # exactly the JSON a read returns; None for a deletion
    seq: int = 0
    method: str = "PUT"
    tenant: str | None = None  # the owning Organization id (fhir_store.tenancy)

    @property
    def etag(self) -> str:
        return f'W/"{self.version_id}"'

    @property
    def last_updated_instant(self) -> str:
        return format_instant(self.last_updated)

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.resource_id}"
