"""Fixtures shared by the whole suite: a hub on each backend, in-process and over real HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub, build_hub
from fhirhub.core.settings import Settings
from tests import backends

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

# The suite exercises FHIR semantics without tokens; authentication is on by default for users
# and is tested on its own (tests/plugins/security), where each test turns it on explicitly.
# Set here, at import, so servers started in subprocesses inherit it too.
os.environ["FHIRHUB_AUTH"] = "off"
# The master patient index links the records of one person, and the suite's fixtures repeat
# the same invented person from test to test on purpose; the MPI's own tests (tests/plugins/mpi)
# enable it explicitly (``plugins=""``). The vitals plugin likewise: it scores every vital sign
# the suite writes (extra resources other tests would count, work for every Synthea load); its
# tests (tests/plugins/vitals) enable it with ``plugins="-mpi"``.
os.environ.setdefault("FHIRHUB_PLUGINS", "-mpi,-vitals")
# Servers started by tests do not preload the terminology (R4 code systems, UCUM units: seconds
# of CPU each); what a test uses loads on first use.
os.environ.setdefault("FHIRHUB_TERMINOLOGY_PRELOAD", "false")
# Two workers, their hubs and the servers they start share one PostgreSQL server's
# max_connections (100): each process keeps two idle connections, not ten.
os.environ.setdefault("FHIRHUB_DB_POOL_SIZE", "2")


@pytest.fixture(autouse=True)
def _release_pooled_connections() -> Iterator[None]:
    """After each test, close the idle pooled connections of every PostgreSQL engine the test
    created.

    Hubs built by tests are not always disposed, and each PostgreSQL engine keeps up to ten
    idle connections: over a suite of this size the two workers would exhaust the server's
    ``max_connections``. ``Engine.dispose`` closes only the connections in the pool (a hub kept
    by a wider-scoped fixture simply opens new ones), so this never breaks a running hub."""
    from sqlalchemy.pool import NullPool

    from fhirhub.core import dispatcher
    from fhirhub.fhir_store import database

    created: list[object] = []
    original = database.create_engine
    locks: list[dispatcher._Locks] = []
    original_locks_init = dispatcher._Locks.__init__

    def tracking_locks(self: dispatcher._Locks, hub: Hub) -> None:
        original_locks_init(self, hub)
        locks.append(self)

    dispatcher._Locks.__init__ = tracking_locks  # type: ignore[method-assign]

    def tracking(*args: object, **kwargs: object) -> object:
        engine = original(*args, **kwargs)  # type: ignore[arg-type]
        created.append(engine)
        return engine

    database.create_engine = tracking  # type: ignore[assignment]
    try:
        yield
    finally:
        database.create_engine = original
        dispatcher._Locks.__init__ = original_locks_init  # type: ignore[method-assign]
        for held in locks:  # each hub's advisory-lock connection (reopened if still needed)
            held.release()
        for engine in created:
            if engine.dialect.name != "sqlite":  # type: ignore[attr-defined]
                engine.dispose()  # type: ignore[attr-defined]
                # A thread the test left behind (an app served without its lifespan keeps
                # its audit writer) may still write through this engine: from now on each
                # use opens and closes its own connection, so none is left idle in a pool.
                pool = engine.pool  # type: ignore[attr-defined]
                engine.pool = NullPool(pool._creator, dialect=pool._dialect)  # type: ignore[attr-defined]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "postgresql" in callspec.params.values():
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def worker_id_safe(request: pytest.FixtureRequest) -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return backends.sqlite_template(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="session")
def postgres_url(worker_id_safe: str) -> Iterator[str]:
    url = backends.postgres_database(worker_id_safe)
    yield url
    backends.drop_postgres_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """A fresh, migrated, empty database on each backend."""
    if request.param == "sqlite":
        return backends.fresh_sqlite_url(sqlite_template, tmp_path / "hub.db")
    url: str = request.getfixturevalue("postgres_url")
    backends.truncate_postgres(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    return backends.fresh_sqlite_url(sqlite_template, tmp_path / "hub.db")


def make_settings(url: str, data_dir: Path, **extra: object) -> Settings:
    return Settings(db=url, data_dir=data_dir, **extra)  # type: ignore[arg-type]


@pytest.fixture
def hub(database_url: str, tmp_path: Path) -> Iterator[Hub]:
    # No MLLP or DICOM listener: tests run in parallel and would fight over the ports.
    hub = build_hub(make_settings(database_url, tmp_path, listeners=False))
    yield hub
    hub.store.engine.dispose()


@pytest.fixture
def client(hub: Hub) -> Iterator[TestClient]:
    from fhirhub.core.http.app import create_app

    with TestClient(create_app(hub=hub), base_url="http://testserver") as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """``fhirhub serve`` in a subprocess on a free port: real HTTP, real process."""

    def __init__(self, db_url: str, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.fhir = f"{self.base}/fhir"
        self.db_url = db_url
        self.data_dir = data_dir
        # Listeners off unless the test asks for them (parallel tests share the machine's ports).
        # The worker process too: a second process loading the hub at every start; the tests
        # of the worker process, of crashes and of scale-out ask for it.
        self.env = {
            **os.environ,
            "FHIRHUB_DATA_DIR": str(data_dir),
            "FHIRHUB_LISTENERS": "off",
            "FHIRHUB_WORKER_PROCESS": "off",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LiveServer:
        self.log = open(self.data_dir / f"server-{self.port}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fhirhub.core.cli",
                "serve",
                "--port",
                str(self.port),
                "--db",
                self.db_url,
            ],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited: {(self.data_dir / f'server-{self.port}.log').read_text()}"
                )
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start in 60 s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if hasattr(self, "log"):
            self.log.close()


@pytest.fixture
def live_server(database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(database_url, tmp_path).start()
    yield server
    server.stop()
