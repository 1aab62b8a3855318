"""Canonical activity definitions, an inline projection of statements.

Revision ID: ingest_0003
Revises: ingest_0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ingest_0003"
down_revision = "ingest_0002"
branch_labels = None
depends_on = None

Position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "xapi_activities",
        sa.Column("tenant", sa.Text, primary_key=True),
        sa.Column("activity_id", sa.Text, primary_key=True),
        sa.Column("definition", sa.LargeBinary, nullable=False),
        sa.Column("position", Position, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("xapi_activities")
