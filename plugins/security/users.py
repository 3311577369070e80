"""Users: accounts with one role, bound to a tenant (an Organization) unless the role spans
all tenants. Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from fhirhub.plugins.security.roles import ROLES
from fhirhub.plugins.security.state import Security, now
from fhirhub.plugins.security.tables import refresh_tokens, users
from fhirhub.sdk import FhirError

_hasher = PasswordHasher()
#: Verified against when the user name is unknown, so a miss costs as long as a hit.
_DUMMY_HASH = _hasher.hash("not a password of anyone")


@dataclass(frozen=True)
class User:
    id: str
    username: str
    email: str | None
    role: str
    tenant: str | None
    patient: str | None
    fhir_user: str | None
    disabled: bool
    has_password: bool

    @property
    def fhir_user_claim(self) -> str | None:
        if self.fhir_user:
            return self.fhir_user
        return f"Patient/{self.patient}" if self.role == "patient" and self.patient else None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "email": self.email,
            "role": self.role,
            "tenant": self.tenant,
            "patient": self.patient,
            "fhirUser": self.fhir_user_claim,
            "disabled": self.disabled,
            "active": self.has_password and not self.disabled,
        }


def _user(row: Any) -> User:
    return User(
        row.id,
        row.username,
        row.email,
        row.role,
        row.tenant,
        row.patient,
        row.fhir_user,
        bool(row.disabled),
        row.password_hash is not None,
    )


def check_role(role: str, tenant: str | None, patient: str | None) -> None:
    if role not in ROLES:
        raise FhirError(400, f"Unknown role {role!r}; one of: {', '.join(ROLES)}")
    if ROLES[role].tenant_bound and not tenant:
        raise FhirError(400, f"A {role} belongs to a tenant (an Organization id)")
    if not ROLES[role].tenant_bound and tenant:
        raise FhirError(400, f"A {role} spans all tenants; give no tenant")
    if role == "patient" and not patient:
        raise FhirError(400, "A patient user needs the id of its Patient resource")


def check_password_strength(sec: Security, password: str) -> None:
    if len(password) < sec.config.min_password_length:
        raise FhirError(
            400, f"The password must have at least {sec.config.min_password_length} characters"
        )


def create_user(
    sec: Security,
    username: str,
    *,
    role: str,
    tenant: str | None = None,
    email: str | None = None,
    password: str | None = None,
    patient: str | None = None,
    fhir_user: str | None = None,
) -> User:
    check_role(role, tenant, patient)
    if password is not None:
        check_password_strength(sec, password)
    values = {
        "id": uuid.uuid4().hex,
        "username": username,
        "email": email,
        "password_hash": _hasher.hash(password) if password is not None else None,
        "role": role,
        "tenant": tenant,
        "patient": patient,
        "fhir_user": fhir_user,
        "disabled": False,
        "created": now(),
    }
    try:
        with sec.engine.begin() as conn:
            conn.execute(insert(users).values(**values))
    except IntegrityError as exc:
        raise FhirError(409, f"The user name {username!r} is taken", code="duplicate") from exc
    found = find_user(sec, username)
    assert found is not None
    return found


def find_user(sec: Security, username: str) -> User | None:
    with sec.engine.connect() as conn:
        row = conn.execute(select(users).where(users.c.username == username)).first()
    return _user(row) if row is not None else None


def get_user(sec: Security, user_id: str) -> User | None:
    with sec.engine.connect() as conn:
        row = conn.execute(select(users).where(users.c.id == user_id)).first()
    return _user(row) if row is not None else None


def list_users(sec: Security, tenant: str | None = None) -> list[User]:
    query = select(users).order_by(users.c.username)
    if tenant is not None:
        query = query.where(users.c.tenant == tenant)
    with sec.engine.connect() as conn:
        return [_user(row) for row in conn.execute(query)]


def count_users(sec: Security) -> int:
    with sec.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(users)).scalar_one())


def check_password(sec: Security, username: str, password: str) -> User | None:
    """The user when the password matches an enabled account, else None (constant work)."""
    with sec.engine.connect() as conn:
        row = conn.execute(select(users).where(users.c.username == username)).first()
    stored = row.password_hash if row is not None and row.password_hash else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or not row.password_hash or row.disabled:
        return None
    if _hasher.check_needs_rehash(stored):
        with sec.engine.begin() as conn:
            conn.execute(
                update(users)
                .where(users.c.id == row.id)
                .values(password_hash=_hasher.hash(password))
            )
    return _user(row)


def set_password(sec: Security, user_id: str, password: str) -> None:
    check_password_strength(sec, password)
    with sec.engine.begin() as conn:
        conn.execute(
            update(users).where(users.c.id == user_id).values(password_hash=_hasher.hash(password))
        )


def set_disabled(sec: Security, user_id: str, disabled: bool = True) -> None:
    """Disable (or enable) an account. Its access tokens stop working at once (every request
    checks the account) and its refresh tokens are revoked."""
    with sec.engine.begin() as conn:
        conn.execute(update(users).where(users.c.id == user_id).values(disabled=disabled))
        if disabled:
            conn.execute(
                update(refresh_tokens)
                .where(refresh_tokens.c.user_id == user_id)
                .values(revoked=True)
            )
