"""one value-ordered reference index, keyed by the target

``ix_reference_lookup`` (type, parameter, target) and ``ix_reference_target`` (target type and
id) become ``ix_reference_to`` (target id and type, then type and parameter), which serves
both reference searches and "what refers to X"; absolute and canonical references (no target
id) get a partial index of their own, ``ix_reference_url``. Indexes are projections: nothing
else changes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_URL_ROWS = sa.text("url IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("index_reference") as batch_op:
        batch_op.drop_index("ix_reference_lookup")
        batch_op.drop_index("ix_reference_target")
        batch_op.create_index(
            "ix_reference_to", ["target_id", "target_type", "resource_type", "param"]
        )
        batch_op.create_index(
            "ix_reference_url",
            ["url", "resource_type", "param"],
            sqlite_where=_URL_ROWS,
            postgresql_where=_URL_ROWS,
        )


def downgrade() -> None:
    with op.batch_alter_table("index_reference") as batch_op:
        batch_op.drop_index("ix_reference_url")
        batch_op.drop_index("ix_reference_to")
        batch_op.create_index(
            "ix_reference_lookup", ["resource_type", "param", "target_id", "target_type"]
        )
        batch_op.create_index("ix_reference_target", ["target_type", "target_id"])
