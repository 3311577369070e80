"""The security plugin's own tables, in their own ``MetaData`` (the store's migrations do not
know them). They are created when the plugin first touches the database, on SQLite and
PostgreSQL alike; secrets are stored only as hashes (argon2 for passwords, SHA-256 for
random, high-entropy tokens such as codes, refresh tokens and invitation links).
"""

from __future__ import annotations

import threading

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.exc import DBAPIError

metadata = MetaData()

users = Table(
    "security_user",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("username", String(200), nullable=False, unique=True),
    Column("email", String(320)),
    Column("password_hash", Text),  # None until an invitation is accepted
    Column("role", String(32), nullable=False),
    Column("tenant", String(64)),  # the Organization id; None for super_admin / app_admin
    Column("patient", String(64)),  # the user's own Patient id (patient role)
    Column("fhir_user", String(200)),  # e.g. Practitioner/123, for the fhirUser claim
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created", Integer, nullable=False),
)

clients = Table(
    "security_client",
    metadata,
    Column("client_id", String(200), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("public", Boolean, nullable=False, default=False),
    Column("redirect_uris", Text, nullable=False, default="[]"),  # JSON list
    Column("scopes", Text, nullable=False, default=""),  # what the client may be granted
    Column("jwks", Text),  # JSON Web Key Set for private_key_jwt
    Column("jwks_url", Text),
    Column("tenant", String(64)),  # backend services: the tenant it acts for
    Column("all_tenants", Boolean, nullable=False, default=False),
    Column("created", Integer, nullable=False),
)

codes = Table(
    "security_code",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("client_id", String(200), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("scope", Text, nullable=False),
    Column("patient", String(64)),
    Column("code_challenge", String(128), nullable=False),
    Column("expires", Integer, nullable=False),
    Column("used", Boolean, nullable=False, default=False),
)

refresh_tokens = Table(
    "security_refresh_token",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("family", String(64), nullable=False, index=True),
    Column("client_id", String(200), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("scope", Text, nullable=False),
    Column("patient", String(64)),
    Column("expires", Integer, nullable=False),
    Column("used", Boolean, nullable=False, default=False),
    Column("revoked", Boolean, nullable=False, default=False),
)

revoked_tokens = Table(
    "security_revoked_token",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("expires", Integer, nullable=False),
)

#: Access tokens issued under a grant family (an authorization code and the refresh tokens
#: rotated from it), so that replaying the code or a rotated refresh token revokes them too.
issued_tokens = Table(
    "security_issued_token",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("family", String(64), nullable=False, index=True),
    Column("expires", Integer, nullable=False),
)

#: EHR launch contexts (SMART ``launch``): an opaque value, stored as its SHA-256, that an EHR
#: hands to an app so that it opens in a patient's context.
launch_contexts = Table(
    "security_launch_context",
    metadata,
    Column("launch_hash", String(64), primary_key=True),
    Column("tenant", String(64)),
    Column("patient", String(64), nullable=False),
    Column("created_by", String(300), nullable=False),
    Column("expires", Integer, nullable=False),
)

used_assertions = Table(
    "security_used_assertion",
    metadata,
    Column("client_id", String(200), primary_key=True),
    Column("jti", String(200), primary_key=True),
    Column("expires", Integer, nullable=False),
)

login_attempts = Table(
    "security_login_attempt",
    metadata,
    Column("key", String(300), primary_key=True),  # "user:<name>" or "ip:<address>"
    Column("failures", Integer, nullable=False),
    Column("last_failure", Integer, nullable=False),
    Column("locked_until", Integer, nullable=False),
)

invitations = Table(
    "security_invitation",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", String(64), nullable=False),
    Column("expires", Integer, nullable=False),
    Column("used", Boolean, nullable=False, default=False),
)

outbox = Table(
    "security_email_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("recipient", String(320), nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("created", Integer, nullable=False),
    Column("sent", Integer),  # when SMTP accepted it; None while only in the outbox
)

_created: set[int] = set()
_lock = threading.Lock()


def ensure_tables(engine: Engine) -> None:
    """Create the tables once per engine (idempotent; tolerates a concurrent creator)."""
    if id(engine) in _created:
        return
    with _lock:
        if id(engine) in _created:
            return
        try:
            _create(engine)
        except DBAPIError:  # another process created them between the check and the CREATE
            _create(engine)
        _created.add(id(engine))


def _create(engine: Engine) -> None:
    """``create_all`` in a write transaction taken up front (``BEGIN IMMEDIATE`` on SQLite):
    a deferred one that has read the catalogue fails at once with "database is locked" when
    it must become a writer while another connection writes (plugins starting together)."""
    options = {"sqlite_begin": "IMMEDIATE"} if engine.dialect.name == "sqlite" else {}
    with engine.connect().execution_options(**options) as conn, conn.begin():
        metadata.create_all(conn)
