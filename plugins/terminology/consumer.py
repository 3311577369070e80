"""The projection of stored CodeSystem resources into the concept tables.

A CodeSystem POSTed to the hub (complete, fragment or supplement, with its concepts) becomes a
loaded version once committed; an update replaces it, a deletion removes it. The version log
is the truth: ``fhirhub replay`` resets and rebuilds the projection from it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import orjson
from sqlalchemy import select

from fhirhub.plugins.terminology.fhir_codesystem import from_resource
from fhirhub.plugins.terminology.service import Terminology
from fhirhub.plugins.terminology.store import _delete_version, write_code_systems
from fhirhub.plugins.terminology.tables import SHARED, version_table
from fhirhub.sdk import FhirError, StoredVersion, tenant_of

log = logging.getLogger("fhirhub.terminology")

#: The ``source`` of versions projected from stored resources.
SOURCE = "fhir"


def handle_code_systems(service: Terminology, versions: Sequence[StoredVersion]) -> None:
    for version in versions:
        with service.db.begin() as conn:
            old = conn.execute(
                select(version_table.c.key).where(
                    version_table.c.resource_id == version.resource_id,
                    version_table.c.source == SOURCE,
                )
            ).scalars()
            for key in list(old):
                _delete_version(conn, key)
            if version.deleted or version.content is None:
                continue
            resource = orjson.loads(version.content)
            if (
                not resource.get("concept")
                or not resource.get("url")
                or resource.get("content") == "not-present"
            ):
                continue
            try:
                data = from_resource(resource, source=SOURCE, resource_id=version.resource_id)
                # A tenant's own CodeSystem (labelled) is that tenant's; others are shared.
                data.tenant = tenant_of(resource) or SHARED
                write_code_systems(conn, [data])
            except FhirError as exc:  # refused on write since; an old version may still fail
                log.warning("CodeSystem/%s not loaded: %s", version.resource_id, exc)


def reset_projection(service: Terminology) -> None:
    with service.db.begin() as conn:
        keys = conn.execute(select(version_table.c.key).where(version_table.c.source == SOURCE))
        for key in list(keys.scalars()):
            _delete_version(conn, key)
