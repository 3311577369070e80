"""data keys for the optional encryption at rest

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 21:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "content_key",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key_id"),
    )
    with op.batch_alter_table("content_key", schema=None) as batch_op:
        batch_op.create_index("ix_content_key_tenant", ["tenant"], unique=False)


def downgrade() -> None:
    op.drop_table("content_key")
