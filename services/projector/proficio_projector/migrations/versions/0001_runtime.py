"""The projector runtime: generations, Kafka offsets, dead letters, leases and members.

Revision ID: projector_0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "projector_0001"
down_revision = None
branch_labels = None
depends_on = None

Position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "projector_generations",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("generation", sa.Integer, primary_key=True),
        sa.Column("code_version", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("segments", sa.Integer, nullable=False),
        sa.Column("built_through", sa.BigInteger, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("activated_us", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "projector_offsets",
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.Column("last_position", sa.BigInteger, nullable=False),
        sa.Column("highwater", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "projector_dead_letters",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("consumer", sa.Text, nullable=False),
        sa.Column("position", Position, nullable=False),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("stream", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("parked_us", sa.BigInteger, nullable=False),
        sa.Column("resolved_us", sa.BigInteger, nullable=True),
        sa.UniqueConstraint("consumer", "position", name="uq_dead_letters_consumer_position"),
    )
    op.create_index("ix_dead_letters_open", "projector_dead_letters", ["consumer", "resolved_us"])
    op.create_table(
        "projector_leases",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("segment", sa.Integer, primary_key=True),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "projector_members",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("owner", sa.Text, primary_key=True),
        sa.Column("seen_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "projector_members",
        "projector_leases",
        "projector_dead_letters",
        "projector_offsets",
        "projector_generations",
    ):
        op.drop_table(table)
