"""Database tables of the FHIR store.

The version log (``resource_version``) is the source of truth: every create, update and delete
appends one immutable row. Everything else here is a projection of that log and can be rebuilt
from it by ``fhirhub replay``:

* ``resource_current``: the latest version of each resource (a tombstone row for deleted ones,
  so reads can answer 410 Gone);
* the search index tables (``fhir_store.search.index_tables``), one per search parameter type.

The log is also the dispatcher's outbox: consumers of committed versions read it in ``seq``
order from their own cursor (``dispatch_cursor``).

Content is stored as the exact JSON bytes returned to clients (the client's JSON plus ``id`` and
``meta``), not as JSONB: PostgreSQL's JSONB reorders keys, and FHIR clients expect what they sent.
Instants are stored as integer microseconds since the Unix epoch so that ``_since``/``_at`` and
date-range search compare numbers the same way on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
)
from sqlmodel import SQLModel

metadata = SQLModel.metadata

# SQLite only auto-increments an ``INTEGER PRIMARY KEY``; PostgreSQL gets a BIGSERIAL.
SequenceNumber = BigInteger().with_variant(Integer(), "sqlite")

#: FHIR ids are at most 64 characters ([A-Za-z0-9\-\.]{1,64}); resource type names are shorter.
ID_LENGTH = 64
TYPE_LENGTH = 64

resource_version = Table(
    "resource_version",
    metadata,
    Column("seq", SequenceNumber, primary_key=True, autoincrement=True),
    Column("resource_type", String(TYPE_LENGTH), nullable=False),
    Column("resource_id", String(ID_LENGTH), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", BigInteger, nullable=False),  # microseconds since epoch, UTC
    Column("method", String(8), nullable=False),  # POST, PUT, PATCH or DELETE
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", LargeBinary, nullable=True),  # None for a deletion tombstone
    # The Organization id that owns this version (``meta.security`` tenant label; a tombstone
    # keeps its resource's tenant), so history can be filtered per tenant without parsing.
    Column("tenant", String(ID_LENGTH), nullable=True),
    # SHA-256 over this row's content chained to the previous row's hash (tamper evidence).
    Column("hash", LargeBinary, nullable=True),
    UniqueConstraint("resource_type", "resource_id", "version_id", name="uq_version"),
    Index("ix_version_type_updated", "resource_type", "last_updated"),
    Index("ix_version_updated", "last_updated"),
    Index("ix_version_tenant", "tenant", "seq"),
)

resource_current = Table(
    "resource_current",
    metadata,
    Column("resource_type", String(TYPE_LENGTH), primary_key=True),
    Column("resource_id", String(ID_LENGTH), primary_key=True),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("seq", BigInteger, nullable=False),
    Column("content", LargeBinary, nullable=True),
    Column("tenant", String(ID_LENGTH), nullable=True),
    Index("ix_current_type_updated", "resource_type", "last_updated"),
    Index("ix_current_tenant", "tenant", "resource_type"),
)

#: Named cursors over the version log: one per consumer of committed versions, so a failing
#: plugin is retried from its own position without holding others back.
dispatch_cursor = Table(
    "dispatch_cursor",
    metadata,
    Column("consumer", String(200), primary_key=True),
    Column("last_seq", BigInteger, nullable=False, default=0),
)

#: The Patient compartments (http://hl7.org/fhir/R4/compartmentdefinition-patient.html) each
#: version of a compartment type is in, as written: a deletion keeps those of the version it
#: ends. A patient-context caller sees a version (read, vread, history) by the compartment it
#: was in when written, not by where its resource is now, so moving an Observation to another
#: patient's chart does not show that patient its earlier versions. A projection of the log:
#: ``fhirhub replay`` rebuilds it.
version_compartment = Table(
    "version_compartment",
    metadata,
    Column("patient_id", String(ID_LENGTH), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
)

#: Signed heads of the hash chain: the server's Ed25519 signature over the hash of the log row
#: ``seq``, so rewriting the whole chain after that row needs the private key too.
chain_signature = Table(
    "chain_signature",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("head_hash", LargeBinary, nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signed_at", BigInteger, nullable=False),
)

#: Data keys of the optional encryption at rest (``fhir_store.encryption``), one or more per
#: tenant ("" for resources without one), each wrapped by the master key kept outside the DB.
content_key = Table(
    "content_key",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("tenant", String(ID_LENGTH), nullable=False),
    Column("wrapped", LargeBinary, nullable=False),
    Column("created", BigInteger, nullable=False),
    Index("ix_content_key_tenant", "tenant"),
)
