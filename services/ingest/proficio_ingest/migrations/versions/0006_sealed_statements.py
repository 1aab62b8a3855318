"""Statements keep their personal part sealed (crypto-shredding): learner, sealed, key_id.

Revision ID: ingest_0006
Revises: ingest_0005
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ingest_0006"
down_revision = "ingest_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("xapi_statements") as batch:
        batch.add_column(sa.Column("learner", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("sealed", sa.LargeBinary, nullable=True))
        batch.add_column(sa.Column("key_id", sa.Text, nullable=True))
    op.create_index("ix_xapi_statements_learner", "xapi_statements", ["tenant", "learner"])
    with op.batch_alter_table("xapi_documents") as batch:
        batch.add_column(sa.Column("learner", sa.Text, nullable=True))
        batch.add_column(sa.Column("key_id", sa.Text, nullable=True))
    op.create_index("ix_xapi_documents_learner", "xapi_documents", ["tenant", "learner"])


def downgrade() -> None:
    op.drop_index("ix_xapi_documents_learner", "xapi_documents")
    with op.batch_alter_table("xapi_documents") as batch:
        batch.drop_column("key_id")
        batch.drop_column("learner")
    op.drop_index("ix_xapi_statements_learner", "xapi_statements")
    with op.batch_alter_table("xapi_statements") as batch:
        batch.drop_column("key_id")
        batch.drop_column("sealed")
        batch.drop_column("learner")
