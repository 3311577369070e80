"""The sync: OSCAR records -> FHIR, one transaction per page, cursors after the commit.

For each stream (:data:`~fhirhub.adapters.oscar.sources.STREAMS`, people first) the sync reads
a page after the stream's cursor, maps every record, and writes the resources, the batch's
Provenance and the dead letters of the records that failed in one transaction, acting as the
system for the clinic's tenant. Only after that transaction commits does the cursor move, so
an interrupted run resumes where it stopped and re-reads at most one page, which changes
nothing: every resource has an id derived from its OSCAR key, and the store keeps no new
version for an update that changes nothing. An edited row is a new version; an archived or
deleted one gets its FHIR status (``entered-in-error``, ``stopped``...), never a deletion.

A page the store rejects as a whole (a resource the mapper made that the validator refuses)
is written again record by record, each in a savepoint, so only the bad records become dead
letters. A source error (network, a malformed answer) stops that stream for this run, keeps
its cursor and is reported; the other streams carry on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from fhirhub.adapters.oscar import dead_letters
from fhirhub.adapters.oscar.dates import MappingError
from fhirhub.adapters.oscar.mapping import Mapped, Mapper, MappingContext
from fhirhub.adapters.oscar.mapping.notes import revision_of
from fhirhub.adapters.oscar.mapping.observations import withdrawn
from fhirhub.adapters.oscar.mapping.scheduling import cancelled
from fhirhub.adapters.oscar.model import DeletedAppointment, DeletedMeasurement, Note, OscarRecord
from fhirhub.adapters.oscar.provenance import batch_provenance
from fhirhub.adapters.oscar.settings import OscarSettings
from fhirhub.adapters.oscar.sources import Cursor, Page, Source, SourceError
from fhirhub.adapters.oscar.state import DeadLetter, SyncState, now_text
from fhirhub.sdk import FhirError, Hub, HubLocal, Transaction, acting_as, system_for, transaction

log = logging.getLogger("fhirhub.oscar")


@dataclass
class StreamReport:
    records: int = 0
    resources: int = 0
    dead_letters: int = 0
    warnings: int = 0
    pages: int = 0
    error: str | None = None


@dataclass
class SyncReport:
    mode: str
    streams: dict[str, StreamReport] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def records(self) -> int:
        return sum(s.records for s in self.streams.values())

    @property
    def resources(self) -> int:
        return sum(s.resources for s in self.streams.values())

    @property
    def dead_letters(self) -> int:
        return sum(s.dead_letters for s in self.streams.values())

    @property
    def ok(self) -> bool:
        return self.error is None and not any(s.error for s in self.streams.values())

    def summary(self) -> str:
        return (
            f"{self.mode} sync: {self.records} records, {self.resources} FHIR versions written, "
            f"{self.dead_letters} dead letters, {len(self.warnings)} warnings in {self.seconds:.2f} s"
        )


class SyncBusy(RuntimeError):
    """Another sync of this hub is running."""


_LOCK: HubLocal[threading.Lock] = HubLocal("oscar.sync-lock")
_LOCK_GUARD = threading.Lock()


def _lock(hub: Hub) -> threading.Lock:
    with _LOCK_GUARD:
        lock = _LOCK.get(hub)
        if lock is None:
            lock = threading.Lock()
            _LOCK.set(hub, lock)
        return lock


def mapping_context(
    settings: OscarSettings, links: dict[tuple[str, str], str] | None = None
) -> MappingContext:
    return MappingContext(
        instance=settings.instance_name,
        source_uri=settings.source_uri,
        id_prefix=settings.id_prefix,
        zone=settings.zone,
        links=links or {},
    )


class _Known:
    """Resources known to exist in the hub, looked up once per run (providers, patients)."""

    def __init__(self, hub: Hub, resource_type: str, id_of: Callable[[str], str]) -> None:
        self.hub = hub
        self.resource_type = resource_type
        self.id_of = id_of
        self.present: set[str] = set()
        self.absent: set[str] = set()
        #: The transaction of the page being written: lookups must go through it (a second
        #: write transaction would wait for this one on SQLite).
        self.tx: Transaction | None = None

    def add(self, key: str) -> None:
        self.present.add(key)
        self.absent.discard(key)

    def __contains__(self, key: object) -> bool:
        name = str(key)
        if name in self.present:
            return True
        if name in self.absent:
            return False
        if self.tx is not None:
            version = self.tx.current(self.resource_type, self.id_of(name))
        else:
            with transaction(self.hub) as tx:
                version = tx.current(self.resource_type, self.id_of(name))
        found = version is not None and not version.deleted
        (self.present if found else self.absent).add(name)
        return found


class OscarSync:
    """One sync run (or several, sequentially) of one OSCAR instance into one hub."""

    def __init__(self, hub: Hub, settings: OscarSettings, source: Source) -> None:
        self.hub = hub
        self.settings = settings
        self.source = source
        self.state = SyncState(hub, settings.instance_name)
        self.ctx = mapping_context(settings)
        self.access = system_for(settings.tenant)

    def run(
        self, *, full: bool = False, since: str | None = None, streams: Iterable[str] | None = None
    ) -> SyncReport:
        lock = _lock(self.hub)
        if not lock.acquire(blocking=False):
            raise SyncBusy("an OSCAR sync is already running")
        mode = "full" if full else ("since " + since if since else "incremental")
        report = SyncReport(mode)
        run_id = self.state.start_run(mode)
        started = time.perf_counter()
        try:
            self._check_tenant()
            self.ctx = mapping_context(self.settings, self.state.links())
            providers = _Known(self.hub, "Practitioner", self.ctx.practitioner_id)
            patients = _Known(self.hub, "Patient", lambda key: key)
            mapper = Mapper(self.ctx, providers)
            wanted = set(streams) if streams else None
            for stream in self.source.streams:
                if wanted is not None and stream not in wanted:
                    continue
                report.streams[stream] = self._stream(
                    stream, mapper, providers, patients, full=full, since=since, report=report
                )
        except Exception as exc:  # reported in the run row, the CLI and the UI
            report.error = f"{type(exc).__name__}: {exc}"
            log.exception("OSCAR sync failed")
        finally:
            report.seconds = time.perf_counter() - started
            errors = [f"{name}: {s.error}" for name, s in report.streams.items() if s.error]
            if report.error:
                errors.insert(0, report.error)
            self.state.finish_run(
                run_id,
                status="ok" if not errors else "error",
                records=report.records,
                resources=report.resources,
                dead_letters=report.dead_letters,
                warnings=len(report.warnings),
                error="; ".join(errors) or None,
            )
            lock.release()
        log.info("OSCAR %s", report.summary())
        return report

    def _check_tenant(self) -> None:
        tenant = self.settings.tenant
        if not tenant:
            return
        with transaction(self.hub) as tx:
            org = tx.current("Organization", tenant)
        if org is None or org.deleted:
            raise RuntimeError(
                f"the tenant Organization/{tenant} does not exist: create it before syncing"
            )

    def _stream(
        self,
        stream: str,
        mapper: Mapper,
        providers: _Known,
        patients: _Known,
        *,
        full: bool,
        since: str | None,
        report: SyncReport,
    ) -> StreamReport:
        out = StreamReport()
        cursor = Cursor() if (full or since) else self.state.cursor(stream)
        open_letters = self.state.open_dead_letters(stream)
        while True:
            try:
                page = self.source.read(stream, cursor, self.settings.batch_size, since)
            except SourceError as exc:
                out.error = str(exc)
                log.warning("OSCAR %s: %s (cursor kept)", stream, exc)
                return out
            if page.records:
                written, letters, resolved = self._write_page(
                    stream, page, mapper, providers, patients, open_letters, report
                )
                out.records += len(page.records)
                out.resources += written
                out.dead_letters += len(letters)
                self.state.record_dead_letters(letters)
                self.state.resolve_dead_letters(stream, resolved)
                for key in resolved:
                    open_letters.pop(key, None)
            out.pages += 1
            if page.records or page.cursor != cursor:
                self.state.advance(stream, page.cursor, len(page.records))
            cursor = page.cursor
            if page.done or not page.records:
                return out

    # -- one page --------------------------------------------------------------------------
    def _write_page(
        self,
        stream: str,
        page: Page,
        mapper: Mapper,
        providers: _Known,
        patients: _Known,
        open_letters: dict[str, str],
        report: SyncReport,
    ) -> tuple[int, list[DeadLetter], list[str]]:
        try:
            return self._attempt(
                stream,
                page.records,
                mapper,
                providers,
                patients,
                open_letters,
                report,
                isolate=False,
            )
        except FhirError as exc:
            log.info("OSCAR %s page rejected (%s); writing record by record", stream, exc)
            return self._attempt(
                stream,
                page.records,
                mapper,
                providers,
                patients,
                open_letters,
                report,
                isolate=True,
            )

    def _attempt(
        self,
        stream: str,
        records: list[OscarRecord],
        mapper: Mapper,
        providers: _Known,
        patients: _Known,
        open_letters: dict[str, str],
        report: SyncReport,
        *,
        isolate: bool,
    ) -> tuple[int, list[DeadLetter], list[str]]:
        letters: list[DeadLetter] = []
        succeeded: list[tuple[str, str]] = []
        warnings: list[str] = []
        with acting_as(self.access), transaction(self.hub) as tx:
            providers.tx = patients.tx = tx
            for record in records:
                try:
                    if isolate:
                        with tx.savepoint() as inner:
                            wrote = self._write_record(
                                inner, stream, record, mapper, patients, warnings
                            )
                    else:
                        wrote = self._write_record(tx, stream, record, mapper, patients, warnings)
                except MappingError as exc:
                    letters.append(self._dead_letter(tx, stream, record, str(exc)))
                    continue
                except FhirError as exc:
                    if not isolate:
                        raise
                    letters.append(
                        self._dead_letter(tx, stream, record, f"rejected by the store: {exc}")
                    )
                    continue
                if wrote:
                    succeeded.append((record.table, record.key))
                if stream == "provider":
                    providers.add(record.key)
            written = tx.written
            resources = [
                v
                for v in written
                if v.resource_type not in ("Task", "Binary")
                or not v.resource_id.startswith(self.ctx.id_prefix + "-dl-")
            ]
            resolved = [key for table, key in succeeded if key in open_letters]
            for key in resolved:
                dead_letters.resolve(tx, open_letters[key], "synced after a later change in OSCAR")
            if resources:
                tx.create(
                    batch_provenance(self.ctx, resources, succeeded, f"OSCAR sync of {stream}")
                )
            providers.tx = patients.tx = None
        for v in resources:
            if v.resource_type == "Patient":
                patients.add(v.resource_id)
        report.warnings.extend(warnings)
        for message in warnings:
            log.warning("OSCAR: %s", message)
        return len(resources), letters, resolved

    def _dead_letter(
        self, tx: Transaction, stream: str, record: OscarRecord, reason: str
    ) -> DeadLetter:
        task = dead_letters.write_dead_letter(tx, self.ctx, stream, record, reason)
        log.warning("OSCAR %s %s dead-lettered as Task/%s: %s", stream, record.key, task, reason)
        return DeadLetter(stream, record.key, task, reason, now_text(), False)

    def _write_record(
        self,
        tx: Transaction,
        stream: str,
        record: OscarRecord,
        mapper: Mapper,
        patients: _Known,
        warnings: list[str],
    ) -> bool:
        """Write one record's resources; True when it produced any."""
        if isinstance(record, DeletedMeasurement):
            return self._withdraw(
                tx,
                "Observation",
                self.ctx.linked_id("measurements", str(record.originalId), "ms"),
                lambda current: withdrawn(current, record, self.ctx),
            )
        if isinstance(record, DeletedAppointment):
            wrote = self._withdraw(
                tx,
                "Appointment",
                self.ctx.linked_id("appointment", str(record.appointment_no), "ap"),
                lambda current: cancelled(current, record, self.ctx),
            )
            wrote |= self._withdraw(
                tx,
                "Slot",
                self.ctx.resource_id("slot", record.appointment_no),
                lambda current: cancelled(current, record, self.ctx),
            )
            return wrote
        mapped: Mapped = mapper.map(record)
        patient_id = mapped.patient_id
        if patient_id is not None and patient_id not in patients:
            number = getattr(record, "demographic_no", None) or getattr(
                record, "demographicNo", None
            )
            raise MappingError(
                f"demographic_no {number} is not in fhirhub (missing in OSCAR or not synced)"
            )
        resources = mapped.resources
        if isinstance(record, Note):
            current = tx.current("DocumentReference", resources[0]["id"])
            if current is not None and current.content and not current.deleted:
                if record.note_id < revision_of(orjson.loads(current.content), self.ctx):
                    return False  # an older revision than the one stored: already in the history
        for resource in resources:
            tx.update(resource)
        warnings.extend(mapped.warnings)
        return True

    def _withdraw(
        self,
        tx: Transaction,
        resource_type: str,
        resource_id: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> bool:
        current = tx.current(resource_type, resource_id)
        if current is None or current.deleted or not current.content:
            return False
        content = orjson.loads(current.content)
        if content.get("status") == "entered-in-error":
            return False
        tx.update(change(content))
        return True
