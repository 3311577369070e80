"""A throw-away MariaDB for the OSCAR adapter's tests and benchmark.

Starts Debian's ``mariadbd`` on a fresh datadir, a free port and its own socket (so nothing
of a MariaDB the machine already runs is touched); when ``mariadbd`` cannot start there (no
binary, not allowed), it falls back to the server on 127.0.0.1:3306 (root, no password) with a
uniquely named database that is dropped afterwards. Either way the caller gets a SQLAlchemy URL
of an empty database loaded with OSCAR's schema: the full DDL from ``../shared/data/oscar/sql``
when present (what a real OSCAR has), else the committed copy of the tables the adapter reads.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pymysql

REPO = Path(__file__).resolve().parents[3]
SHARED_SQL = REPO.parent / "shared" / "data" / "oscar" / "sql"
FULL_DDL = ("oscarinit.sql", "oscarinit_bc.sql", "initcaisi.sql", "oscardata.sql")
COMMITTED_DDL = REPO / "adapters" / "oscar" / "schema" / "oscar_tables.sql"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(port: int, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            pymysql.connect(host="127.0.0.1", port=port, user="root", password="").close()
            return
        except pymysql.err.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@contextmanager
def mariadb_server() -> Iterator[tuple[str, int]]:
    """Yields ``(host, port)`` of a MariaDB accepting root without a password."""
    mariadbd = shutil.which("mariadbd") or (
        "/usr/sbin/mariadbd" if os.path.exists("/usr/sbin/mariadbd") else None
    )
    install = shutil.which("mariadb-install-db")
    if mariadbd is None or install is None:
        yield "127.0.0.1", 3306
        return
    folder = Path(tempfile.mkdtemp(prefix="oscar-mariadb-"))
    datadir, sock = folder / "data", folder / "mysqld.sock"
    user = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run(
        [
            install,
            "--no-defaults",
            f"--datadir={datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *user,
        ],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    log = open(folder / "server.log", "wb")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [
            mariadbd,
            "--no-defaults",
            f"--datadir={datadir}",
            f"--port={port}",
            f"--socket={sock}",
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=256M",
            "--innodb-flush-log-at-trx-commit=2",
            "--innodb-strict-mode=0",
            "--sql-mode=",
            "--character-set-server=utf8mb3",
            "--collation-server=utf8mb3_general_ci",
            *user,
        ],
        stdout=log,
        stderr=log,
    )
    try:
        _wait(port)
        yield "127.0.0.1", port
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def ddl_statements() -> tuple[str, list[str]]:
    """``(where from, statements)`` of the schema to load."""
    if all((SHARED_SQL / name).exists() for name in FULL_DDL):
        texts = [(SHARED_SQL / name).read_text(encoding="latin-1") for name in FULL_DDL]
        return "OSCAR's full DDL", [s for text in texts for s in split_sql(text)]
    return "the committed copy", split_sql(COMMITTED_DDL.read_text())


def split_sql(text: str) -> list[str]:
    """Statements of a MySQL dump: split on ``;`` at line ends, outside quotes."""
    statements: list[str] = []
    current: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            current.append(ch)
            if ch == "\\":
                current.append(text[i + 1 : i + 2])
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "'\"`":
            quote = ch
            current.append(ch)
        elif ch == "-" and text.startswith("-- ", i) or text.startswith("--\n", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end + 1
            continue
        elif ch == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end + 1
            continue
        elif ch == ";":
            statement = "".join(current).strip()
            if statement:
                statements.append(statement)
            current = []
        else:
            current.append(ch)
        i += 1
    tail = "".join(current).strip()
    if tail:
        statements.append(tail)
    return statements


@contextmanager
def oscar_database(host: str, port: int) -> Iterator[str]:
    """A new database with OSCAR's schema on ``host:port``; yields its SQLAlchemy URL and
    drops it afterwards."""
    name = f"oscar_{uuid.uuid4().hex[:10]}"
    _source, statements = ddl_statements()
    conn = pymysql.connect(host=host, port=port, user="root", password="", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode=''")
            cur.execute("SET SESSION innodb_strict_mode=0")
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb3")
            cur.execute(f"USE `{name}`")
            for statement in statements:
                cur.execute(statement)
        yield f"mysql+pymysql://root:@{host}:{port}/{name}?charset=utf8mb4"
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()
