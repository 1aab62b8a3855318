"""The index of statements by their StatementRef target holds only statements that have one.

Most statements point at no other statement: a full index kept one entry per statement (``target_id``
NULL) that no query reads, written on every append. Every lookup by target (``target_id = ANY(...)``,
``IN (...)``) implies ``target_id IS NOT NULL``, so the partial index serves them all.

Revision ID: ingest_0007
Revises: ingest_0006
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ingest_0007"
down_revision = "ingest_0006"
branch_labels = None
depends_on = None

_HAS_TARGET = sa.text("target_id IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_xapi_statements_target", "xapi_statements")
    op.create_index(
        "ix_xapi_statements_target",
        "xapi_statements",
        ["tenant", "target_id"],
        postgresql_where=_HAS_TARGET,
        sqlite_where=_HAS_TARGET,
    )


def downgrade() -> None:
    op.drop_index("ix_xapi_statements_target", "xapi_statements")
    op.create_index("ix_xapi_statements_target", "xapi_statements", ["tenant", "target_id"])
