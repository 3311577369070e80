"""Demo content for ``fhirhub serve --demo``: the demo ``admin`` user linked to a
Practitioner, a colleague and a short conversation, added at startup only when the store holds
the shipped demo patients and not yet this content."""

from __future__ import annotations

from pathlib import Path

import orjson

from fhirhub.plugins.messaging.identity import USER_SYSTEM
from fhirhub.sdk import SYSTEM, Hub, acting_as, process_bundle, search

DEMO_BUNDLE = Path(__file__).resolve().parent / "data" / "demo.json"
#: A patient of the shipped demo data: its presence says the store is the demo.
DEMO_PATIENT = "https://fhirhub.example.org/demo/mrn|100234"


def is_demo(hub: Hub) -> bool:
    with acting_as(SYSTEM):
        return bool(search(hub, "Patient", {"identifier": DEMO_PATIENT, "_count": "1"}))


def seed_demo(hub: Hub) -> bool:
    """Add the demo conversation once; True when added."""
    if not is_demo(hub):
        return False
    with acting_as(SYSTEM):
        if search(hub, "Practitioner", {"identifier": f"{USER_SYSTEM}|admin", "_count": "1"}):
            return False
        process_bundle(hub, orjson.loads(DEMO_BUNDLE.read_bytes()))
    return True
