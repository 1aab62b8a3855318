"""Tenant settings (which xAPI versions a tenant accepts), an inline projection of TenantConfigured events.

Revision ID: ingest_0004
Revises: ingest_0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ingest_0004"
down_revision = "ingest_0003"
branch_labels = None
depends_on = None

Position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "proficio_tenants",
        sa.Column("tenant", sa.Text, primary_key=True),
        sa.Column("xapi_versions", sa.Text, nullable=False),
        sa.Column("position", Position, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("proficio_tenants")
