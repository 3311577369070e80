"""``search_all`` reads every match, page after page, with the caller's access."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fhirhub.core.hub import Hub, build_hub
from fhirhub.sdk import acting_as, search, search_all, system_for, transaction
from tests.conftest import make_settings


@pytest.fixture
def small_pages(database_url: str, tmp_path: Path) -> Iterator[Hub]:
    """Pages of three: ten matches take four pages."""
    hub = build_hub(make_settings(database_url, tmp_path, listeners=False, max_page_size=3))
    for tenant, count in (("org-a", 10), ("org-b", 4)):
        with acting_as(system_for(tenant)), transaction(hub) as tx:
            tx.update({"resourceType": "Patient", "id": f"p-{tenant}"})
            for n in range(count):
                tx.create(
                    {
                        "resourceType": "Goal",
                        "lifecycleStatus": "active",
                        "description": {"text": f"{tenant} {n}"},
                        "subject": {"reference": f"Patient/p-{tenant}"},
                    }
                )
    yield hub
    hub.store.engine.dispose()


def test_every_match_of_the_callers_tenant_past_the_first_page(small_pages: Hub) -> None:
    with acting_as(system_for("org-a")):
        first_page = search(small_pages, "Goal", {"subject": "Patient/p-org-a"})
        every = list(search_all(small_pages, "Goal", {"subject": "Patient/p-org-a"}))
    assert len(first_page) == 3
    assert sorted(g["description"]["text"] for g in every) == sorted(
        f"org-a {n}" for n in range(10)
    )
    assert len({g["id"] for g in every}) == 10
    with acting_as(system_for("org-b")):
        assert len(list(search_all(small_pages, "Goal", [("lifecycle-status", "active")]))) == 4


def test_the_pagers_own_parameters_are_refused(small_pages: Hub) -> None:
    with acting_as(system_for("org-a")), pytest.raises(ValueError, match="_sort"):
        next(search_all(small_pages, "Goal", {"_sort": "-_lastUpdated"}))
