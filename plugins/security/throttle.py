"""Brute-force protection for password logins (OWASP Authentication Cheat Sheet: throttle
per account and per source address, with a growing delay rather than a permanent lockout
that an attacker could use to lock users out).

After ``user_free_failures`` failures for a user name (``ip_free_failures`` for an address)
each further failure locks that key for 5 * 2^(n - free) seconds, up to ``max_lockout_seconds``.
A success clears the user name's count; an address's count decays after a quiet lockout span.
"""

from __future__ import annotations

from sqlalchemy import delete, insert, select, update

from fhirhub.plugins.security.state import Security, now
from fhirhub.plugins.security.tables import login_attempts


def _keys(username: str, remote: str | None) -> list[tuple[str, int]]:
    return [(f"user:{username.lower()}", 0), (f"ip:{remote or 'unknown'}", 1)]


def locked_for(sec: Security, username: str, remote: str | None) -> int:
    """Seconds until a login for ``username`` from ``remote`` may be tried again (0: now)."""
    keys = [key for key, _ in _keys(username, remote)]
    moment = now()
    with sec.engine.connect() as conn:
        rows = conn.execute(
            select(login_attempts.c.locked_until).where(login_attempts.c.key.in_(keys))
        ).all()
    return max([int(row.locked_until) - moment for row in rows] + [0])


def record_failure(sec: Security, username: str, remote: str | None) -> None:
    moment = now()
    free = (sec.config.user_free_failures, sec.config.ip_free_failures)
    with sec.engine.connect().execution_options(**sec.write_options()) as conn, conn.begin():
        for key, kind in _keys(username, remote):
            row = conn.execute(select(login_attempts).where(login_attempts.c.key == key)).first()
            failures = 1
            if row is not None and moment - row.last_failure < sec.config.max_lockout_seconds * 2:
                failures = row.failures + 1
            over = failures - free[kind]
            locked_until = (
                moment + min(5 * 2**over, sec.config.max_lockout_seconds) if over >= 0 else 0
            )
            values = {"failures": failures, "last_failure": moment, "locked_until": locked_until}
            if row is None:
                conn.execute(insert(login_attempts).values(key=key, **values))
            else:
                conn.execute(
                    update(login_attempts).where(login_attempts.c.key == key).values(**values)
                )


def record_success(sec: Security, username: str) -> None:
    key = _keys(username, None)[0][0]
    with sec.engine.begin() as conn:
        conn.execute(delete(login_attempts).where(login_attempts.c.key == key))
