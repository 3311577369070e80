"""Demo patients for ``make run``: synthetic data shipped with the project (``demo_data/``),
loaded once into an empty store so a first-time user sees a populated hub."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from sqlalchemy import func, select

from fhirhub.fhir_store.schema import resource_current

if TYPE_CHECKING:
    from fhirhub.core.hub import Hub

DEMO_DIR = Path(__file__).parent / "demo_data"


def load_demo_data(hub: Hub) -> int:
    """Load every demo Bundle unless the store already holds patients; returns resources loaded."""
    from fhirhub.core.loading import load_document

    with hub.store.read() as conn:
        patients = conn.execute(
            select(func.count())
            .select_from(resource_current)
            .where(resource_current.c.resource_type == "Patient")
        ).scalar_one()
    if patients:
        return 0
    total = 0
    for path in sorted(DEMO_DIR.glob("*.json")):
        total += load_document(hub, orjson.loads(path.read_bytes()))
    return total
