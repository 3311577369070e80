"""The Provenance of a sync batch: which versions it wrote, from which OSCAR records.

One Provenance per committed batch (R4 §6.3 Provenance): ``target`` names every version the
batch wrote (version-specific references), ``entity`` every OSCAR record it came from (by
table and key, as logical references), ``agent`` the OSCAR instance. A batch that wrote
nothing (a re-run, nothing changed) has no Provenance.
"""

from __future__ import annotations

from typing import Any

from fhirhub.adapters.oscar.mapping.context import OSCAR_TAG_SYSTEM, MappingContext
from fhirhub.adapters.oscar.state import now_text
from fhirhub.sdk import StoredVersion


def batch_provenance(
    ctx: MappingContext, written: list[StoredVersion], records: list[tuple[str, str]], activity: str
) -> dict[str, Any]:
    return {
        "resourceType": "Provenance",
        "meta": ctx.meta(),
        "target": [
            {"reference": f"{v.resource_type}/{v.resource_id}/_history/{v.version_id}"}
            for v in written
        ],
        "recorded": now_text(),
        "activity": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                    "code": "UPDATE",
                    "display": "revise",
                }
            ],
            "text": activity,
        },
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "author",
                        }
                    ]
                },
                "who": {
                    "identifier": {"system": OSCAR_TAG_SYSTEM, "value": ctx.instance},
                    "display": f"OSCAR EMR {ctx.instance}",
                },
            }
        ],
        "entity": [
            {
                "role": "source",
                "what": {
                    "identifier": {"system": ctx.system(table), "value": key},
                    "display": f"OSCAR {table} {key}",
                },
            }
            for table, key in records
        ],
    }
