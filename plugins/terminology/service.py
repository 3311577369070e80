"""The terminology service of one hub: its tables, the shipped R4 content and the lookups the
operations, the search modifiers and the binding checks share."""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select

from fhirhub.plugins.terminology import store
from fhirhub.plugins.terminology.concepts import Concept, ConceptCache
from fhirhub.plugins.terminology.fhir_codesystem import from_resource
from fhirhub.plugins.terminology.lru import LRU
from fhirhub.plugins.terminology.tables import concept_table, metadata, version_table
from fhirhub.sdk import (
    SYSTEM,
    FhirError,
    Hub,
    HubLocal,
    PluginDatabase,
    PluginSettings,
    acting_as,
    current_access,
    plugin_settings,
    search,
    tenant_of,
)

if TYPE_CHECKING:
    from fhirhub.plugins.terminology.expand import Expansion

log = logging.getLogger("fhirhub.terminology")

PLUGIN_NAME = "terminology"
R4_DATA = Path(__file__).resolve().parent / "data" / "r4-terminology.json.gz"
#: The ``source`` of the R4 specification's code systems in the version table.
R4_SOURCE = "r4"
#: How long the latest version of a strict system is taken as known by the checks on write.
LATEST_TTL_S = 5.0
#: Expansions of implicit value sets kept per process (a typeahead page is ~20 codes).
EXPANSION_CACHE_SIZE = 2_000


class TerminologySettings(PluginSettings):
    """``[plugin.terminology]`` / ``FHIRHUB_TERMINOLOGY_*``."""

    #: Code systems whose codes are checked on every write: a Coding with this system and a
    #: code the loaded version does not define is refused (400 naming the element). Codings of
    #: other systems are checked only where base FHIR binds them as required.
    strict_systems: list[str] = ["http://hl7.org/fhir/sid/icd-10-cm"]
    #: The largest expansion ``$expand`` returns in one page (``count`` beyond it is refused)
    #: and the most codes a ``:in``/``:below`` search may stand for.
    max_expansion: int = 10_000
    #: Load the R4 code systems and UCUM's unit table when the hub starts serving, in the
    #: background (else on first use: about two and four seconds of CPU).
    preload: bool = True
    #: Load ICD-10-CM from the ``simple-icd-10-cm`` package in the background when the hub
    #: starts serving and no version is loaded (``make run`` turns it on for the demo).
    load_icd10cm: bool = False


@cache
def r4_content() -> dict[str, Any]:
    """The shipped R4 CodeSystems and ValueSets (parsed once per process)."""
    with gzip.open(R4_DATA, "rt", encoding="utf-8") as data:
        content: dict[str, Any] = json.load(data)
    content["valueSetsByUrl"] = {vs["url"]: vs for vs in content["valueSets"]}
    return content


class Terminology:
    """What the plugin keeps per hub (see :func:`service_of`)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.settings = plugin_settings(hub, PLUGIN_NAME, TerminologySettings)
        self.db = PluginDatabase(hub, metadata)
        self._r4_lock = threading.Lock()
        self._r4_ready = False
        #: The latest version of a url, as last seen (url -> (monotonic time, version)).
        self._latest: dict[tuple[str, str | None], tuple[float, store.Version | None]] = {}
        #: The codes of a version (immutable once active, so cached for the process).
        self._codes: dict[int, frozenset[str]] = {}
        #: Concept details of ``$lookup``/``$validate-code``/``$subsumes``, per version.
        self.concepts = ConceptCache()
        #: Expansions of implicit value sets (typeahead), by version identity and options.
        self.expansions: LRU[Expansion] = LRU(EXPANSION_CACHE_SIZE)

    # -- the R4 content -------------------------------------------------------------------

    def ensure_r4(self) -> None:
        """Load the R4 specification's code systems once (idempotent across processes: the
        check and the load are one write transaction)."""
        if self._r4_ready:
            return
        with self._r4_lock:
            if self._r4_ready:
                return
            systems = r4_content()["codeSystems"]
            with self.db.begin() as conn:
                loaded = conn.execute(
                    select(func.count()).where(
                        version_table.c.source == R4_SOURCE, version_table.c.status == "active"
                    )
                ).scalar_one()
                if loaded < len(systems):
                    present = set(
                        conn.execute(
                            select(version_table.c.url).where(version_table.c.source == R4_SOURCE)
                        ).scalars()
                    )
                    store.write_code_systems(
                        conn,
                        (
                            from_resource(system, source=R4_SOURCE)
                            for system in systems
                            if system["url"] not in present
                        ),
                    )
            self._r4_ready = True

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A consistent snapshot of the concept tables (R4 content loaded first)."""
        self.ensure_r4()
        with self.db.read() as conn:
            yield conn

    # -- the checks on write ----------------------------------------------------------------

    def codes_of(self, url: str, version: str | None) -> tuple[str, frozenset[str]] | None:
        """(version, codes) of a loaded code system, None when not loaded: the check on every
        write reads memory, not the database (a new latest version is seen within
        :data:`LATEST_TTL_S` seconds)."""
        now = time.monotonic()
        cached = self._latest.get((url, version))
        if cached is None or now - cached[0] > LATEST_TTL_S:
            with self.db.read() as conn:
                found = store.find_version(conn, url, version)
            cached = (now, found)
            self._latest[(url, version)] = cached
        found = cached[1]
        if found is None:
            return None
        codes = self._codes.get(found.key)
        if codes is None:
            with self.db.read() as conn:
                codes = frozenset(
                    conn.execute(
                        select(concept_table.c.code).where(concept_table.c.version_key == found.key)
                    ).scalars()
                )
            self._codes = {found.key: codes, **self._codes}
        return found.version, codes

    # -- resolving ------------------------------------------------------------------------

    def find(self, conn: Connection, url: str, version: str | None) -> store.Version | None:
        """The loaded version of ``url`` the calling tenant means: its own code system of
        that url when it has one, else the shared one."""
        return store.find_version(conn, url, version, current_access().tenant)

    def code_system(self, conn: Connection, url: str, version: str | None) -> store.Version:
        """The loaded version of ``url`` the calling tenant means (:meth:`find`); 404 naming
        what is loaded when it is not."""
        tenant = current_access().tenant
        found = store.find_version(conn, url, version, tenant)
        if found is not None:
            return found
        versions = store.versions_of(conn, url, tenant)
        if versions and version is not None:
            raise FhirError(
                404,
                f"CodeSystem {url} version {version} is not loaded (loaded: "
                f"{', '.join(sorted(versions))})",
                code="not-found",
            )
        raise FhirError(404, f"CodeSystem {url} is not known to this server", code="not-found")

    def concept(self, conn: Connection, version: store.Version, code: str) -> Concept | None:
        """The concept ``code`` of a loaded version (cached: versions never change)."""
        return self.concepts.get(conn, version.key, version.version, version.loaded_at, code)

    def value_set(self, url: str, version: str | None = None) -> dict[str, Any]:
        """The ValueSet with canonical ``url``: a stored one (as the caller sees it), else the
        R4 specification's; 404 when neither exists. ``system?fhir_vs`` and
        ``system?fhir_vs=isa/code`` are the implicit value sets of a code system
        (http://hl7.org/fhir/R4/codesystem.html#implicit)."""
        if "?fhir_vs" in url:
            return implicit_value_set(url)
        params = {"url": url, "_count": "2"} | ({"version": version} if version else {})
        # As the caller sees them: the shared ones and its tenant's own, which comes first.
        found = sorted(search(self.hub, "ValueSet", params), key=lambda vs: tenant_of(vs) is None)
        if found:
            return found[0]
        shipped = r4_content()["valueSetsByUrl"].get(url)
        if shipped is not None and (version is None or shipped.get("version") == version):
            return {"resourceType": "ValueSet", **shipped}
        raise FhirError(404, f"ValueSet {url} is not known to this server", code="not-found")

    def value_set_as_system(self, url: str) -> dict[str, Any] | None:
        """A ValueSet read as the system: for the checks on write, whoever writes."""
        with acting_as(SYSTEM):
            try:
                return self.value_set(url)
            except FhirError:
                return None


def implicit_value_set(url: str) -> dict[str, Any]:
    system, _, query = url.partition("?")
    include: dict[str, Any] = {"system": system}
    _, _, argument = query.partition("=")
    if argument:
        operator, _, code = argument.partition("/")
        if operator != "isa" or not code:
            raise FhirError(
                400, f"Unsupported implicit value set {url!r} (use ?fhir_vs or ?fhir_vs=isa/code)"
            )
        include["filter"] = [{"property": "concept", "op": "is-a", "value": code}]
    return {
        "resourceType": "ValueSet",
        "url": url,
        "status": "active",
        "compose": {"include": [include]},
    }


_service: HubLocal[Terminology] = HubLocal("terminology.service")


def service_of(hub: Hub) -> Terminology:
    return _service.setdefault(hub, lambda: Terminology(hub))
