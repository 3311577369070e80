"""pytest fixtures for plugin authors (registered automatically as the ``fhirhub`` pytest plugin).

Override ``fhirhub_plugins`` in your ``conftest.py`` to register your plugin::

    @pytest.fixture
    def fhirhub_plugins():
        return [my_plugin_module]

then use ``fhirhub_hub`` (an in-process hub on SQLite in a temporary folder),
``fhirhub_client`` (a ``TestClient`` against it) or ``fhirhub_server`` (a real uvicorn server
on a free port, yielding its base URL). The store is the same code the hub runs in production,
on SQLite: no mocks.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def fhirhub_plugins() -> list[Any]:
    """Plugins (modules or objects with ``@hookimpl`` functions) to register; override it."""
    return []


@pytest.fixture
def fhirhub_settings(tmp_path: Path) -> Any:
    from fhirhub.core.settings import Settings

    return Settings(
        db=f"sqlite:///{tmp_path / 'fhirhub.db'}",
        data_dir=tmp_path,
        listeners=False,
        auth="off",  # a plugin's own tests run as the system unless they log in
    )


@pytest.fixture
def fhirhub_hub(fhirhub_settings: Any, fhirhub_plugins: list[Any]) -> Iterator[Any]:
    from fhirhub.core.hub import build_hub

    hub = build_hub(fhirhub_settings, extra_plugins=fhirhub_plugins)
    yield hub
    hub.close()


@pytest.fixture
def fhirhub_client(fhirhub_hub: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from fhirhub.core.http.app import create_app

    with TestClient(create_app(hub=fhirhub_hub)) as client:
        yield client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fhirhub_server(fhirhub_hub: Any) -> Iterator[str]:
    """A real HTTP server (uvicorn in a thread) on a free port; yields ``http://127.0.0.1:PORT``."""
    import httpx
    import uvicorn

    from fhirhub.core.http.app import create_app

    port = _free_port()
    config = uvicorn.Config(
        create_app(hub=fhirhub_hub), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield base
    server.should_exit = True
    thread.join(timeout=10)
