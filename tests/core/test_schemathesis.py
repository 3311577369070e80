"""Property-based API testing: schemathesis generates requests from the app's own OpenAPI
document (``/openapi.json``) for every operation, core and plugin routes alike, and no answer
may be a 5xx. In-process (ASGI), a bounded number of examples per operation, so it runs in
well under a minute."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from fhirhub.core.hub import build_hub
from fhirhub.core.settings import Settings

#: Examples per operation (about 45 operations, some 1,300 requests, ~20 s).
EXAMPLES = int(os.environ.get("FHIRHUB_SCHEMATHESIS_EXAMPLES", "40"))
#: ``FHIRHUB_SCHEMATHESIS_SEED=random`` explores new examples instead of the fixed ones.
DERANDOMIZE = os.environ.get("FHIRHUB_SCHEMATHESIS_SEED") != "random"


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    from fhirhub.core.http.app import create_app

    data = Path(tmp_path_factory.mktemp("schemathesis"))
    hub = build_hub(
        Settings(
            db=f"sqlite:///{data / 'hub.db'}",
            data_dir=data,
            auth="off",
            listeners=False,
            rate_limit="off",
        )
    )
    app = create_app(hub=hub)
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    hub.close()


def test_no_generated_request_gets_a_server_error(api_schema: schemathesis.BaseSchema) -> None:
    failures: list[str] = []
    statuses: list[int] = []
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=DERANDOMIZE,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
        )
        def exercise(case: schemathesis.Case) -> None:
            response = case.call()
            statuses.append(response.status_code)
            if response.status_code >= 500:
                failures.append(
                    f"{response.status_code} {case.method} {case.formatted_path} "
                    f"query={case.query!r} body={str(case.body)[:80]!r}: {response.text[:200]}"
                )

        exercise()
    assert operations > 30 and len(statuses) > 20 * operations
    assert any(200 <= status < 300 for status in statuses)
    assert not failures, "\n".join(failures[:30])
