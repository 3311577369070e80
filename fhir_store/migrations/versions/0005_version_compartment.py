"""the Patient compartments of each version (``version_compartment``)

Versions written before this revision are placed in the compartments their resource is in now
(from the reference index), which is what history showed until then; deletions of resources
deleted before it get none (a patient-context caller keeps getting 404 for those).
``fhirhub replay`` recomputes every row exactly from the log.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "version_compartment",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("patient_id", "seq"),
    )
    from fhirhub.fhir_store.search.compartment import patient_compartment

    members = " OR ".join(
        "(r.resource_type = '{}' AND r.param IN ({}))".format(
            resource_type, ", ".join(f"'{param}'" for param in params)
        )
        for resource_type, params in sorted(patient_compartment().items())
    )
    op.execute(
        "INSERT INTO version_compartment (patient_id, seq) "
        "SELECT DISTINCT r.target_id, v.seq FROM resource_version v "
        "JOIN index_reference r ON r.resource_type = v.resource_type "
        "AND r.resource_id = v.resource_id "
        f"WHERE r.target_type = 'Patient' AND r.target_id IS NOT NULL AND ({members}) "
        "UNION "
        "SELECT v.resource_id, v.seq FROM resource_version v WHERE v.resource_type = 'Patient'"
    )


def downgrade() -> None:
    op.drop_table("version_compartment")
