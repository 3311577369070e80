"""The plugin's own tables: per-subscription delivery state, the durable event queue, the
owners' access and websocket binding tokens.

``subscriptions_event`` is each subscription's ordered queue: event numbers are dense from 1,
assigned in version-log order, unique per (subscription, log position), so a re-delivered
batch of the log adds nothing twice. Events are kept after delivery (``$events`` answers from
them) until the subscription is deleted.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

state = Table(
    "subscriptions_state",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant", String(64), nullable=True),
    Column("spec", Text, nullable=False),  # SubscriptionSpec as JSON
    Column("status", String(16), nullable=False),  # active | error | off | requested
    Column("created_seq", Integer, nullable=False),  # log position it was (re)started at
    Column("last_seq", Integer, nullable=False),  # log position evaluated up to
    Column("event_count", Integer, nullable=False, default=0),
    Column("delivered", Integer, nullable=False, default=0),  # last event number delivered
    Column("handshake_pending", Boolean, nullable=False, default=False),
    Column("failures", Integer, nullable=False, default=0),
    Column("first_failure_at", Float, nullable=True),
    Column("next_attempt_at", Float, nullable=False, default=0.0),
    Column("last_sent_at", Float, nullable=False, default=0.0),
    Column("last_error", Text, nullable=True),
    Column("lease_until", Float, nullable=False, default=0.0),
)

event = Table(
    "subscriptions_event",
    metadata,
    Column("subscription_id", String(64), primary_key=True),
    Column("event_number", Integer, primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("resource_id", String(64), nullable=False),
    Column("version_id", String(32), nullable=False),
    Column("interaction", String(16), nullable=False),
    Column("timestamp", String(40), nullable=False),
    Column("content", LargeBinary, nullable=True),  # the version, for full-resource payloads
    UniqueConstraint("subscription_id", "seq", name="subscriptions_event_seq"),
)

owner = Table(
    "subscriptions_owner",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("access", Text, nullable=False),  # who wrote the Subscription: whose eyes it has
)

binding_token = Table(
    "subscriptions_ws_token",
    metadata,
    Column("token", String(64), primary_key=True),
    Column("subscriptions", Text, nullable=False),  # space-separated ids
    Column("expires_at", Float, nullable=False),
)
