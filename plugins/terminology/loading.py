"""Loading a code system: from a source to the concept tables and a CodeSystem resource.

``load(hub, source, ...)`` is what the ``fhirhub terminology load`` command, the
``CodeSystem/$load`` operation's background task and the tests run. The CodeSystem resource
stored beside the concepts says what is loaded (url, version, count) with
``content = not-present``: the concepts are served by the operations, not inlined.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhirhub.plugins.terminology import icd10cm, loinc, snomed
from fhirhub.plugins.terminology.model import CodeSystemData
from fhirhub.plugins.terminology.service import service_of
from fhirhub.plugins.terminology.store import Progress, Version, write_code_system
from fhirhub.sdk import SYSTEM, Hub, acting_as, invalid, transaction

SOURCES = ("icd10cm", "loinc", "snomed")


@dataclass(frozen=True)
class LoadResult:
    version: Version
    seconds: float
    resource_id: str | None

    def summary(self) -> dict[str, Any]:
        return {
            "url": self.version.url,
            "version": self.version.version,
            "concepts": self.version.concept_count,
            "seconds": round(self.seconds, 2),
            "resource": f"CodeSystem/{self.resource_id}" if self.resource_id else None,
        }


def read_source(
    source: str,
    *,
    path: str | None = None,
    version: str | None = None,
    hierarchy: str | None = None,
) -> CodeSystemData:
    """Parse one source into a :class:`CodeSystemData` (no database involved)."""
    if source == "icd10cm":
        if path is None:
            return icd10cm.from_package()
        return icd10cm.from_cms_csv(path, version or _version_from_name(path))
    if source == "loinc":
        if path is None:
            raise invalid("LOINC is loaded from a Loinc.csv the user provides (--csv)")
        return loinc.from_files(path, hierarchy, version or _version_from_name(path))
    if source == "snomed":
        if path is None:
            raise invalid("SNOMED CT is loaded from an RF2 snapshot folder the user provides")
        return snomed.from_rf2(path, version)
    raise invalid(f"Unknown terminology source {source!r} (one of {', '.join(SOURCES)})")


def _version_from_name(path: str) -> str:
    import re

    match = re.search(r"(20\d\d)", Path(path).name)
    return match.group(1) if match else time.strftime("%Y-%m-%d")


def load(
    hub: Hub,
    source: str,
    *,
    path: str | None = None,
    version: str | None = None,
    hierarchy: str | None = None,
    progress: Progress | None = None,
) -> LoadResult:
    """Load a code system version and record it as a CodeSystem resource (as the system)."""
    started = time.perf_counter()
    if progress is not None:
        progress("reading", 0, 1)
    data = read_source(source, path=path, version=version, hierarchy=hierarchy)
    service = service_of(hub)
    stored = (
        write_code_system(service.db, data, progress)
        if progress
        else write_code_system(service.db, data)
    )
    resource = {
        "resourceType": "CodeSystem",
        "url": stored.url,
        "version": stored.version,
        "name": stored.name or "CodeSystem",
        "title": stored.title,
        "status": "active",
        "content": "not-present",
        "count": stored.concept_count,
        "caseSensitive": stored.case_sensitive,
        "hierarchyMeaning": "is-a",
    }
    resource = {k: v for k, v in resource.items() if v is not None}
    with acting_as(SYSTEM), transaction(hub) as tx:
        written = tx.conditional_update(f"url={stored.url}&version={stored.version}", resource)
    return LoadResult(stored, time.perf_counter() - started, written.version.resource_id)
