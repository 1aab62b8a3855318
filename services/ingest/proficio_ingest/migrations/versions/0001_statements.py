"""Credentials and the statement query tables.

Revision ID: ingest_0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ingest_0001"
down_revision = None
branch_labels = None
depends_on = None

Position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "credentials",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("secret_hash", sa.LargeBinary, nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("revoked_us", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "xapi_statements",
        sa.Column("tenant", sa.Text, primary_key=True),
        sa.Column("statement_id", sa.Text, primary_key=True),
        sa.Column("position", Position, nullable=False),
        sa.Column("stored_us", sa.BigInteger, nullable=False),
        sa.Column("voided", sa.Boolean, nullable=False),
        sa.Column("is_voiding", sa.Boolean, nullable=False),
        sa.Column("target_id", sa.Text, nullable=True),
        sa.Column("credential", sa.Text, nullable=False),
        sa.Column("has_attachments", sa.Boolean, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_xapi_statements_position", "xapi_statements", ["tenant", "position"], unique=True)
    op.create_index("ix_xapi_statements_target", "xapi_statements", ["tenant", "target_id"])
    op.create_table(
        "xapi_statement_index",
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("kind", sa.SmallInteger, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("position", Position, nullable=False),
        sa.Column("narrow", sa.Boolean, nullable=False),
        # Covering on PostgreSQL: the narrow filter is answered from the index alone.
        sa.PrimaryKeyConstraint("tenant", "kind", "value", "position", postgresql_include=["narrow"]),
    )
    op.create_table(
        "xapi_attachments",
        sa.Column("tenant", sa.Text, primary_key=True),
        sa.Column("sha2", sa.Text, primary_key=True),
        sa.Column("content_type", sa.Text, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("xapi_attachments")
    op.drop_table("xapi_statement_index")
    op.drop_table("xapi_statements")
    op.drop_table("credentials")
