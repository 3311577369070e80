"""Loading the synthetic clinic (:mod:`fhirhub.adapters.oscar.sample_clinic`) into a real
OSCAR database, and small edits the tests make to it as OSCAR would."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import pymysql


def connect(url: str) -> pymysql.connections.Connection:
    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        database=parts.path.lstrip("/"),
        autocommit=True,
        charset="utf8mb4",
    )


def insert_rows(url: str, tables: Mapping[str, Iterable[Mapping[str, Any]]]) -> None:
    """INSERT every row (OSCAR's own DDL gives the other columns their defaults)."""
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode=''")
            for table, rows in tables.items():
                rows = list(rows)
                if not rows:
                    continue
                columns = list(rows[0])
                sql = (
                    f"INSERT INTO `{table}` ({', '.join(f'`{c}`' for c in columns)}) "
                    f"VALUES ({', '.join(['%s'] * len(columns))})"
                )
                for start in range(0, len(rows), 2000):
                    cur.executemany(
                        sql, [tuple(r.get(c) for c in columns) for r in rows[start : start + 2000]]
                    )
    finally:
        conn.close()


def execute(url: str, sql: str, *params: Any) -> int:
    """Run one statement as OSCAR would (sql_mode as OSCAR's install asks); returns rowcount."""
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode=''")
            return int(cur.execute(sql, params or None))
    finally:
        conn.close()
