"""Statements are no longer indexed by learner: the log's stream index finds a learner's statements.

``ix_xapi_statements_learner`` cost one btree entry per stored statement, and only erasure read it (a rare,
per-learner operation). A statement's learner is its event's stream, so erasure finds her statements' positions
through the events' ``(tenant, stream, stream_version)`` index and joins on ``ix_xapi_statements_position``.

Revision ID: ingest_0009
Revises: ingest_0008
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "ingest_0009"
down_revision = "ingest_0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_xapi_statements_learner", "xapi_statements")


def downgrade() -> None:
    op.create_index("ix_xapi_statements_learner", "xapi_statements", ["tenant", "learner"])
