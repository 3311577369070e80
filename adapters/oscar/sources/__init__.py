"""Ways into OSCAR. Each source reads *streams* (one per OSCAR table the sync follows) in
pages after a cursor and returns :mod:`~fhirhub.adapters.oscar.model` records, so the mapper
and the sync do not know which source fed them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fhirhub.adapters.oscar.model import OscarRecord

#: Streams in sync order: who and whom before what refers to them.
STREAMS = (
    "provider",
    "demographic",
    "allergies",
    "drugs",
    "measurements",
    "measurementsDeleted",
    "appointment",
    "appointmentArchive",
    "casemgmt_note",
)


@dataclass(frozen=True)
class Cursor:
    """A position in a stream: the last record's update time (``YYYY-MM-DD HH:MM:SS``, empty
    for streams keyed by id only) and its key. Records after it are the ones not yet synced."""

    updated: str = ""
    key: str = ""

    @property
    def is_start(self) -> bool:
        return not self.updated and not self.key


@dataclass
class Page:
    records: list[OscarRecord]
    #: The position after the last record of this page (where the next page starts).
    cursor: Cursor
    #: True when nothing follows this page (for now).
    done: bool


class SourceError(RuntimeError):
    """OSCAR could not be read (network, authentication, a malformed answer); the sync stops
    the stream, keeps its cursor, and reports the error."""


class Source(Protocol):
    """What the sync needs of a source."""

    #: ``database``, ``rest``, ``soap`` or ``demo``.
    kind: str
    #: The streams this source can read (others are reported as not available).
    streams: tuple[str, ...]

    def read(self, stream: str, after: Cursor, limit: int, since: str | None = None) -> Page:
        """Up to ``limit`` records of ``stream`` after ``after`` (and, with ``since``, updated
        at or after that local timestamp), oldest first."""
        ...

    def close(self) -> None: ...
