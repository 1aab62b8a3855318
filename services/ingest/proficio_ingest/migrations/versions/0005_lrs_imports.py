"""Progress of imports from other LRSs (proficio import-lrs).

Revision ID: ingest_0005
Revises: ingest_0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ingest_0005"
down_revision = "ingest_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "proficio_lrs_imports",
        sa.Column("tenant", sa.Text, primary_key=True),
        sa.Column("source", sa.Text, primary_key=True),
        sa.Column("next_url", sa.Text, nullable=True),
        sa.Column("run_consistent_through", sa.Text, nullable=True),
        sa.Column("since", sa.Text, nullable=True),
        sa.Column("last_stored", sa.Text, nullable=True),
        sa.Column("statements", sa.BigInteger, nullable=False),
        sa.Column("pages", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("proficio_lrs_imports")
