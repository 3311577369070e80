"""Fixtures of the OSCAR adapter's tests: a real MariaDB with OSCAR's schema, the synthetic BC
clinic loaded into it, and a hub on SQLite."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pymysql
import pytest

from fhirhub.adapters.oscar.sample_clinic import generate
from fhirhub.adapters.oscar.settings import OscarSettings
from tests.adapters.oscar.clinic_db import insert_rows
from tests.adapters.oscar.mariadb_server import mariadb_server, oscar_database

TABLES = (
    "provider",
    "demographic",
    "demographicExt",
    "allergies",
    "drugs",
    "measurementType",
    "measurements",
    "measurementsExt",
    "measurementsDeleted",
    "appointment",
    "appointmentArchive",
    "issue",
    "casemgmt_note",
    "casemgmt_issue",
    "casemgmt_issue_notes",
)


@pytest.fixture(scope="session")
def oscar_template() -> Iterator[tuple[str, int, str]]:
    """A MariaDB (started for the session) with one database holding OSCAR's schema:
    ``(host, port, database name)``."""
    with mariadb_server() as (host, port), oscar_database(host, port) as url:
        yield host, port, url.rsplit("/", 1)[1].split("?")[0]


@pytest.fixture(scope="session")
def clinic_rows() -> dict[str, list[dict[str, Any]]]:
    return generate(60, seed=11, per_patient=20)


@contextmanager
def clinic_database(
    template: tuple[str, int, str], rows: dict[str, list[dict[str, Any]]]
) -> Iterator[str]:
    """A fresh OSCAR database: the adapter's tables copied from the template (``CREATE TABLE
    ... LIKE``, with OSCAR's seed rows) and ``rows``; dropped afterwards. Yields its URL."""
    host, port, source = template
    name = f"clinic_{uuid.uuid4().hex[:10]}"
    conn = pymysql.connect(host=host, port=port, user="root", password="", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb3")
            for table in TABLES:
                cur.execute(f"CREATE TABLE `{name}`.`{table}` LIKE `{source}`.`{table}`")
                cur.execute(f"INSERT INTO `{name}`.`{table}` SELECT * FROM `{source}`.`{table}`")
        url = f"mysql+pymysql://root:@{host}:{port}/{name}?charset=utf8mb4"
        insert_rows(url, rows)
        yield url
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


@pytest.fixture
def oscar_url(
    oscar_template: tuple[str, int, str], clinic_rows: dict[str, list[dict[str, Any]]]
) -> Iterator[str]:
    """A fresh OSCAR database for one test holding the clinic's 60 patients."""
    with clinic_database(oscar_template, clinic_rows) as url:
        yield url


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Any]:
    from fhirhub.core.hub import build_hub
    from fhirhub.core.settings import Settings

    hub = build_hub(
        Settings(
            db=f"sqlite:///{tmp_path / 'hub.db'}",
            data_dir=tmp_path,
            listeners=False,
            auth="off",
        )
    )
    yield hub
    hub.close()


def settings_for(url: str, **extra: Any) -> OscarSettings:
    return OscarSettings(database=url, instance="clinic-test", **extra)
