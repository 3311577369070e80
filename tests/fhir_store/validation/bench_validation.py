"""Validation throughput over the Synthea corpus (a script, not collected by pytest).

Run: ``.venv/bin/python -m tests.fhir_store.validation.bench_validation`` from the repository
root. Prints resources/s for validate_resource per resource type, validate_many in-process and
with worker processes, and fhir.resources' R4B ``model_validate`` on the same data for scale.
"""

from __future__ import annotations

import os
import platform
import time
from collections import defaultdict
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from fhirhub.fhir_store.validation import shutdown_pool, validate_many, validate_resource

from .synthea import synthea_resources


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>9,.0f} resources/s  ({seconds / count * 1e6:6.1f} µs each)"


def main() -> None:
    resources = synthea_resources()
    print(
        f"{len(resources)} Synthea resources; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    validate_resource(resources[0])  # compile the element tree outside the timings

    start = time.perf_counter()
    for resource in resources:
        validate_resource(resource)
    print("validate_resource          ", _rate(len(resources), time.perf_counter() - start))

    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for resource in resources:
        by_type[resource["resourceType"]].append(resource)
    for name in ("Patient", "Observation", "Claim", "ExplanationOfBenefit", "Encounter"):
        group = by_type[name]
        start = time.perf_counter()
        for resource in group:
            validate_resource(resource)
        print(f"  {name:<25}", _rate(len(group), time.perf_counter() - start))

    for processes in (1, 2, 2):
        start = time.perf_counter()
        validate_many(resources, processes=processes)
        label = f"validate_many processes={processes}"
        print(f"{label:<27}", _rate(len(resources), time.perf_counter() - start))
    shutdown_pool()

    start = time.perf_counter()
    for resource in resources:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    print("fhir.resources R4B (ref.)  ", _rate(len(resources), time.perf_counter() - start))


if __name__ == "__main__":
    main()
