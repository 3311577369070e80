from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fhirhub.core.http.app import create_app
from fhirhub.core.hub import Hub
from tests.plugins.audit.header_auth import auth_hub


@pytest.fixture
def audited_hub(database_url: str, tmp_path: Path) -> Iterator[Hub]:
    hub = auth_hub(database_url, tmp_path)
    yield hub
    hub.close()


@pytest.fixture
def audited(audited_hub: Hub) -> Iterator[TestClient]:
    """A client of a hub with authentication on (``X-Test-User``) and the audit plugin."""
    with TestClient(create_app(hub=audited_hub), base_url="http://testserver") as client:
        yield client
