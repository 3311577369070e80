"""The one thread that writes DICOM instances into FHIR, a study at a time, in batches.

Why a dedicated writer: an ImagingStudy holds every instance of its study, so recording
instances one transaction each rewrites (validates, indexes) the whole growing study for every
image, O(n²) per study. The recorder takes whatever instances have queued up while its previous
transaction committed, groups them by tenant and study (two tenants' copies of one study are
two studies) and records each group as one transaction
(:func:`mapping.transaction_bundle` accepts several instances). Under load the batches grow by
themselves; when idle each instance is its own batch. It is also the only FHIR writer of the
adapter, so two instances of one study never race for the same ImagingStudy in this process.

A caller either waits for its instance's transaction (STOW-RS, imports: errors come back) or
does not (C-STORE, by default: the file and the catalogue row are already safe; see
docs/dicom.md for the trade-off). Instances whose transaction did not commit stay marked
unrecorded in the catalogue and are queued again when the archive opens.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from fhirhub.adapters.dicom.mapping import InstanceHeaders

log = logging.getLogger("fhirhub.dicom")

#: Instances per transaction at most (keeps one transaction's size and latency bounded).
MAX_BATCH = 200


class Pending:
    """One queued instance; ``wait()`` returns the ImagingStudy reference or raises."""

    def __init__(self, headers: InstanceHeaders) -> None:
        self.headers = headers
        self._done = threading.Event()
        self.reference: str | None = None
        self.error: BaseException | None = None

    def finish(self, reference: str | None, error: BaseException | None = None) -> None:
        self.reference, self.error = reference, error
        self._done.set()

    def wait(self, timeout: float | None = 120) -> str:
        if not self._done.wait(timeout):
            raise TimeoutError("The FHIR transaction for this instance did not finish in time")
        if self.error is not None:
            raise self.error
        assert self.reference is not None
        return self.reference


class StudyRecorder:
    """Queue + writer thread around ``record(batch of one tenant's study) -> ImagingStudy
    reference``; ``record`` also flags the catalogue rows once the transaction committed."""

    def __init__(self, record: Callable[[Sequence[InstanceHeaders]], str]) -> None:
        self._record = record
        self._queue: list[Pending] = []
        self._busy = False
        self._closed = False
        self._condition = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="dicom-recorder", daemon=True)
        self._thread.start()

    def submit(self, headers: InstanceHeaders) -> Pending:
        pending = Pending(headers)
        with self._condition:
            if self._closed:
                raise RuntimeError("The DICOM recorder is closed")
            self._queue.append(pending)
            self._condition.notify_all()
        return pending

    def drain(self, timeout: float = 120) -> bool:
        """Wait until everything queued so far is recorded (or failed)."""
        with self._condition:
            return self._condition.wait_for(lambda: not self._queue and not self._busy, timeout)

    @property
    def backlog(self) -> int:
        with self._condition:
            return len(self._queue)

    def close(self, timeout: float = 30) -> None:
        self.drain(timeout)
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._queue or self._closed)
                if not self._queue and self._closed:
                    return
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                self._busy = True
            try:
                by_study: dict[tuple[str, str], list[Pending]] = {}
                for pending in batch:
                    key = (pending.headers.tenant, pending.headers.study_uid)
                    by_study.setdefault(key, []).append(pending)
                for group in by_study.values():
                    self._record_group(group)
            finally:
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()

    def _record_group(self, group: list[Pending]) -> None:
        try:
            reference = self._record([p.headers for p in group])
        except Exception as error:
            if len(group) > 1:  # isolate the instance that fails; record the others
                for pending in group:
                    self._record_group([pending])
                return
            log.error("DICOM instance %s not recorded in FHIR: %s", group[0].headers.sop_uid, error)
            group[0].finish(None, error)
            return
        for pending in group:
            pending.finish(reference)
