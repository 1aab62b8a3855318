"""The equity views' tables: per-learner facts, the suppressed cells per audience, and each tenant's refresh state.

Revision ID: projector_0002
Revises: projector_0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "projector_0002"
down_revision = "projector_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "equity_facts",
        sa.Column("tenant", sa.Text, primary_key=True),
        sa.Column("learner", sa.Text, primary_key=True),
        sa.Column("scope", sa.Text, primary_key=True),
        sa.Column("pct_mastered", sa.Text, nullable=False),
        sa.Column("mastered", sa.Boolean, nullable=False),
        sa.Column("on_track", sa.Boolean, nullable=True),
        sa.Column("stalled", sa.Boolean, nullable=False),
        sa.Column("velocity", sa.Text, nullable=True),
        sa.Column("as_of", sa.Text, nullable=False),
    )
    op.create_table(
        "equity_cells",
        sa.Column("tenant", sa.Text, primary_key=True),
        sa.Column("audience", sa.Text, primary_key=True),
        sa.Column("scope", sa.Text, primary_key=True),
        sa.Column("level", sa.Text, primary_key=True),
        sa.Column("factor", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, primary_key=True),
        sa.Column("n", sa.Integer, nullable=True),
        sa.Column("hidden", sa.Text, nullable=True),
        sa.Column("label", sa.Text, nullable=True),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("as_of", sa.Text, nullable=False),
    )
    op.create_table(
        "equity_state",
        sa.Column("tenant", sa.Text, primary_key=True),
        sa.Column("as_of", sa.Text, nullable=False),
        sa.Column("evidence_mark", sa.BigInteger, nullable=False),
        sa.Column("facts_mark", sa.Text, nullable=False),
        sa.Column("cells_mark", sa.Text, nullable=False),
        sa.Column("learners", sa.Integer, nullable=False),
        sa.Column("refreshed_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("equity_state")
    op.drop_table("equity_cells")
    op.drop_table("equity_facts")
