"""Demo content for ``fhirhub serve --demo``: one websocket Subscription (high glucose
results) so the Subscriptions page shows a live one, added at startup only when the store
holds the shipped demo patients and no Subscription yet."""

from __future__ import annotations

from pathlib import Path

import orjson

from fhirhub.sdk import SYSTEM, Hub, acting_as, create, search

DEMO_SUBSCRIPTION = Path(__file__).resolve().parent / "data" / "demo-subscription.json"
DEMO_PATIENT = "https://fhirhub.example.org/demo/mrn|100234"


def seed_demo(hub: Hub) -> bool:
    with acting_as(SYSTEM):
        if not search(hub, "Patient", {"identifier": DEMO_PATIENT, "_count": "1"}):
            return False
        if search(hub, "Subscription", {"_count": "1"}):
            return False
        create(hub, orjson.loads(DEMO_SUBSCRIPTION.read_bytes()))
    return True
