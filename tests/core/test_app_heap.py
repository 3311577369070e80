"""The server process moves what the hub loaded at startup out of the garbage collector's
reach (``create_app(freeze_heap=True)``, used by ``fhirhub serve``); apps built by tests and
embedders do not."""

from __future__ import annotations

import gc
from pathlib import Path

from fastapi.testclient import TestClient

from fhirhub.core.http.app import create_app
from fhirhub.core.hub import build_hub
from fhirhub.core.settings import Settings


def test_server_app_freezes_the_startup_heap(tmp_path: Path) -> None:
    gc.unfreeze()
    hub = build_hub(
        Settings(db=f"sqlite:///{tmp_path / 'hub.db'}", data_dir=tmp_path, listeners=False)
    )
    try:
        with TestClient(create_app(hub=hub)) as client:
            assert client.get("/healthz").status_code == 200
            assert gc.get_freeze_count() == 0
        with TestClient(create_app(hub=hub, freeze_heap=True)) as client:
            assert gc.get_freeze_count() > 1000
            assert client.get("/fhir/Patient").status_code == 200
    finally:
        gc.unfreeze()
        hub.close()
