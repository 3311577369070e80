"""The Synthea corpus is valid R4, and the validator is at least as strict as fhir.resources.

fhir.resources' R4B models serve as an independent oracle: every mutation of a Synthea
resource that the R4B model rejects must be rejected by our validator too (the R4B models are
lenient in places where R4 JSON is not, e.g. ``"active": "yes"``, so the converse does not hold).
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import pydantic
from fhir.resources.R4B import get_fhir_model_class

from fhirhub.fhir_store.validation import resource_issues, validate_many

from .synthea import synthea_bundles, synthea_resources


def test_every_synthea_resource_validates_faster_than_fhir_resources() -> None:
    resources = synthea_resources()
    assert len(resources) > 20_000
    start = time.process_time()  # CPU time: the shared machine's load must not decide
    failures = {
        f"{r['resourceType']}/{r.get('id')}": [i.diagnostics for i in issues]
        for r in resources
        if (issues := resource_issues(r))
    }
    elapsed = time.process_time() - start
    assert failures == {}
    # fhir.resources' R4B models take ~210 µs per Synthea resource here, the ingest budget
    # (1,500 resources/s on 2 cores) leaves ~260 µs for validation; we measure ~21 µs.
    assert len(resources) / elapsed > 5_000


def test_the_synthea_bundles_validate_as_bundles() -> None:
    bundles = synthea_bundles(limit_files=5)
    assert validate_many(bundles) == [None] * len(bundles)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if path or key != "resourceType":
                yield (*path, key)
                yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*path, index)
            yield from _paths(item, (*path, index))


MUTATIONS: list[Callable[[Any], Any]] = [
    lambda v: 12345,
    lambda v: "x y",
    lambda v: "",
    lambda v: {},
    lambda v: [v],
    lambda v: True,
    lambda v: None,
    lambda v: 1.5,
    lambda v: "2020-13-01",
    lambda v: {"foo": 1},
]


def _r4b_accepts(resource: dict[str, Any]) -> bool:
    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    except (pydantic.ValidationError, ValueError, TypeError):
        return False
    return True


def test_whatever_fhir_resources_rejects_we_reject() -> None:
    resources = synthea_resources(limit_files=5)
    rng = random.Random(20191101)
    checked = 0
    for _ in range(3000):
        resource = copy.deepcopy(rng.choice(resources))
        path = rng.choice(list(_paths(resource)))
        parent: Any = resource
        for step in path[:-1]:
            parent = parent[step]
        if rng.random() < 0.1 and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = rng.choice(MUTATIONS)(parent[path[-1]])
        if not _r4b_accepts(resource):
            checked += 1
            assert resource_issues(resource), (path, resource)
    assert checked > 500
