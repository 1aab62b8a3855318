"""Per-learner data keys and per-tenant identifier secrets (crypto-shredding).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "learner_keys",
        sa.Column("tenant", sa.Text, primary_key=True),
        sa.Column("key_id", sa.Text, primary_key=True),
        sa.Column("learner", sa.Text, nullable=False),
        sa.Column("data_key", sa.LargeBinary, nullable=True),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("erased_us", sa.BigInteger, nullable=True),
        sa.Column("erased_by", sa.Text, nullable=True),
    )
    op.create_index(
        "ix_learner_keys_live",
        "learner_keys",
        ["tenant", "learner"],
        unique=True,
        sqlite_where=sa.text("erased_us IS NULL"),
        postgresql_where=sa.text("erased_us IS NULL"),
    )
    op.create_table(
        "tenant_secrets",
        sa.Column("tenant", sa.Text, primary_key=True),
        sa.Column("secret", sa.LargeBinary, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tenant_secrets")
    op.drop_index("ix_learner_keys_live", "learner_keys")
    op.drop_table("learner_keys")
