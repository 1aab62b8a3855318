"""Checkpoints signed with the operator's ed25519 key.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "signed_checkpoints",
        sa.Column("tenant", sa.Text, primary_key=True),
        sa.Column("position", Position, primary_key=True, autoincrement=False),
        sa.Column("key_id", sa.Text, primary_key=True),
        sa.Column("chain_hash", sa.LargeBinary, nullable=False),
        sa.Column("signed_us", sa.BigInteger, nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("signed_checkpoints")
