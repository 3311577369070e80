"""validate_many: one result per resource, in order, in-process or in worker processes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fhirhub.fhir_store.errors import FhirError
from fhirhub.fhir_store.validation import pool as pool_module
from fhirhub.fhir_store.validation import shutdown_pool, validate_many
from fhirhub.fhir_store.validation.pool import CHUNK


def batch(size: int, bad_every: int) -> list[Any]:
    out: list[Any] = []
    for index in range(size):
        gender = "bogus" if index % bad_every == 0 else "female"
        out.append({"resourceType": "Patient", "id": f"p{index}", "gender": gender})
    return out


def check(results: list[FhirError | None], bad_every: int) -> None:
    for index, result in enumerate(results):
        if index % bad_every == 0:
            assert result is not None and result.status == 400
            assert result.issues[0].expression == ("Patient.gender",)
        else:
            assert result is None


@pytest.fixture
def pool() -> Iterator[None]:
    yield
    shutdown_pool()


def test_in_process_results_line_up_with_the_input() -> None:
    resources = batch(50, bad_every=7)
    resources.append("not a resource")
    results = validate_many(resources)
    assert len(results) == 51
    check(results[:50], bad_every=7)
    assert results[50] is not None and "JSON object" in results[50].message


def test_empty_input() -> None:
    assert validate_many([]) == []


def test_worker_processes_give_the_same_results(pool: None) -> None:
    resources = batch(CHUNK * 2 + 5, bad_every=101)
    results = validate_many(resources, processes=2)
    check(results, bad_every=101)
    assert pool_module._pool is not None  # it did go through worker processes
    # The pool is reused by the next call.
    check(validate_many(resources, processes=2), bad_every=101)
