"""tenant columns, hash chain column, signed chain heads

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 20:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("resource_version", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tenant", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.LargeBinary(), nullable=True))
        batch_op.create_index("ix_version_tenant", ["tenant", "seq"], unique=False)
    with op.batch_alter_table("resource_current", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tenant", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_current_tenant", ["tenant", "resource_type"], unique=False)
    op.create_table(
        "chain_signature",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("head_hash", sa.LargeBinary(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("signed_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )


def downgrade() -> None:
    op.drop_table("chain_signature")
    with op.batch_alter_table("resource_current", schema=None) as batch_op:
        batch_op.drop_index("ix_current_tenant")
        batch_op.drop_column("tenant")
    with op.batch_alter_table("resource_version", schema=None) as batch_op:
        batch_op.drop_index("ix_version_tenant")
        batch_op.drop_column("hash")
        batch_op.drop_column("tenant")
