"""The learner directory: keyed digest of an identity -> random learner id (see _directory.py).

Learner ids written before this revision are ``learner:`` + SHA-256(tenant, identity)[:32]. They stay what they
are (the log is append-only, and they are its streams); ``proficio directory backfill`` maps the identities
found in the live learners' sealed statements to them, so those learners keep their streams and views. See
docs/privacy.md ("Learner ids").

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "learner_directory",
        sa.Column("tenant", sa.Text, primary_key=True),
        sa.Column("digest", sa.Text, primary_key=True),
        sa.Column("learner", sa.Text, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_learner_directory_learner", "learner_directory", ["tenant", "learner"])


def downgrade() -> None:
    op.drop_index("ix_learner_directory_learner", "learner_directory")
    op.drop_table("learner_directory")
