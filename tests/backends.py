"""Test databases on both backends.

SQLite: a schema is created once per session in a template file and copied for each test
(a migration run per test would dominate the suite's time). PostgreSQL: one database per
pytest-xdist worker, upgraded once and truncated between tests. PostgreSQL must be reachable:
the suite tries to start it as ../shared/SERVICES.md says and, on CI, fails rather than skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from fhirhub.fhir_store.database import make_engine
from fhirhub.fhir_store.migrations import upgrade
from fhirhub.fhir_store.schema import metadata

PG_SERVER = os.environ.get("FHIRHUB_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")


def _pg_answers() -> bool:
    try:
        engine = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


def ensure_postgres() -> None:
    if _pg_answers():
        return
    clusters = Path("/etc/postgresql")
    if clusters.is_dir() and shutil.which("pg_ctlcluster"):
        for version in os.listdir(clusters):
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                check=False,
                capture_output=True,
            )
    if _pg_answers():
        return
    message = f"PostgreSQL is not reachable at {PG_SERVER}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def ensure_redis(url: str = "redis://127.0.0.1:6379/0") -> None:
    """Redis must answer: start it as ../shared/SERVICES.md says if it does not; on CI a Redis
    that cannot be started fails the test rather than skipping it."""
    import redis

    def answers() -> bool:
        try:
            return bool(redis.from_url(url, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    if answers():
        return
    if shutil.which("redis-server"):
        subprocess.run(
            [
                "redis-server",
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            check=False,
            capture_output=True,
        )
        for _ in range(50):
            if answers():
                return
            import time

            time.sleep(0.1)
    message = f"Redis is not reachable at {url}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def sqlite_template(directory: Path) -> Path:
    template = directory / "template.db"
    if not template.exists():
        engine = make_engine(f"sqlite:///{template}")
        upgrade(engine)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.dispose()
    return template


def fresh_sqlite_url(template: Path, target: Path) -> str:
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


def postgres_database(worker: str) -> str:
    ensure_postgres()
    name = f"fhirhub_test_{worker}_{os.getpid()}"
    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = f"{PG_SERVER}/{name}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def truncate_postgres(url: str) -> None:
    engine = create_engine(url)
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
    engine.dispose()
