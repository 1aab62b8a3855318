"""The xAPI documents (State, Activity Profile, Agent Profile), an inline projection of the Document* events.

A branch of its own beside ingest_0003/0004: migrations are applied to every head.

Revision ID: ingest_0002
Revises: ingest_0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ingest_0002"
down_revision = "ingest_0001"
branch_labels = None
depends_on = None

Position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "xapi_documents",
        sa.Column("tenant", sa.Text, primary_key=True),
        sa.Column("stream", sa.Text, primary_key=True),
        sa.Column("resource", sa.Text, nullable=False),
        sa.Column("activity_id", sa.Text, nullable=True),
        sa.Column("agent", sa.Text, nullable=True),
        sa.Column("registration", sa.Text, nullable=True),
        sa.Column("document_id", sa.Text, nullable=False),
        sa.Column("content_type", sa.Text, nullable=True),
        sa.Column("content", sa.LargeBinary, nullable=True),
        sa.Column("etag", sa.Text, nullable=True),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("position", Position, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )
    # The id lists and the State DELETE of a context: equality on every column, registration optional.
    op.create_index(
        "ix_xapi_documents_context", "xapi_documents", ["tenant", "resource", "activity_id", "agent", "registration"]
    )


def downgrade() -> None:
    op.drop_table("xapi_documents")
