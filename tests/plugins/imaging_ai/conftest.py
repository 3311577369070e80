from __future__ import annotations

from pathlib import Path

import pytest

from tests import backends


@pytest.fixture(scope="module")
def sqlite_url_module(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> str:
    """One database for a module whose tests share a served hub (a study analysed once)."""
    return backends.fresh_sqlite_url(sqlite_template, tmp_path_factory.mktemp("db") / "hub.db")
