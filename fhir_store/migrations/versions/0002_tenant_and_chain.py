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
    _hash_existing_rows()


def _hash_existing_rows() -> None:
    """Data step: chain the rows written before hashing existed, in ``seq`` order, so an
    upgraded log verifies like a new one (``fhir_store.chain``)."""
    from fhirhub.fhir_store.chain import GENESIS, hash_rows

    bind = op.get_bind()
    log = sa.table(
        "resource_version",
        sa.column("seq", sa.BigInteger()),
        sa.column("resource_type", sa.String()),
        sa.column("resource_id", sa.String()),
        sa.column("version_id", sa.Integer()),
        sa.column("last_updated", sa.BigInteger()),
        sa.column("method", sa.String()),
        sa.column("deleted", sa.Boolean()),
        sa.column("tenant", sa.String()),
        sa.column("content", sa.LargeBinary()),
        sa.column("hash", sa.LargeBinary()),
    )
    columns = [c for c in log.c if c.name != "hash"]
    link, last = GENESIS, None
    while True:
        query = sa.select(*columns).order_by(log.c.seq).limit(2000)
        if last is not None:
            query = query.where(log.c.seq > last)
        rows = [dict(row._mapping) for row in bind.execute(query)]
        if not rows:
            return
        for row in rows:
            row["deleted"] = bool(row["deleted"])
        link = hash_rows(link, rows)
        bind.execute(
            log.update()
            .where(log.c.seq == sa.bindparam("b_seq"))
            .values(hash=sa.bindparam("b_hash")),
            [{"b_seq": row["seq"], "b_hash": row["hash"]} for row in rows],
        )
        last = rows[-1]["seq"]


def downgrade() -> None:
    op.drop_table("chain_signature")
    with op.batch_alter_table("resource_current", schema=None) as batch_op:
        batch_op.drop_index("ix_current_tenant")
        batch_op.drop_column("tenant")
    with op.batch_alter_table("resource_version", schema=None) as batch_op:
        batch_op.drop_index("ix_version_tenant")
        batch_op.drop_column("hash")
        batch_op.drop_column("tenant")
