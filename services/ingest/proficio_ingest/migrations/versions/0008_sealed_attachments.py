"""Attachments are kept per learner, sealed under her key (crypto-shredding): learner, key_id.

The primary key becomes (tenant, sha2, learner). Rows already stored were written in clear, shared by every
statement: they keep learner '' (no one's) and key_id NULL, as a rebuild from their events gives them.

Revision ID: ingest_0008
Revises: ingest_0007
Create Date: 2026-11-22
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "ingest_0008"
down_revision = "ingest_0007"
branch_labels = None
depends_on = None

_TABLE = "xapi_attachments"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.add_column(_TABLE, sa.Column("learner", sa.Text, nullable=False, server_default=""))
        op.add_column(_TABLE, sa.Column("key_id", sa.Text, nullable=True))
        op.drop_constraint(f"{_TABLE}_pkey", _TABLE, type_="primary")
        op.create_primary_key(f"{_TABLE}_pkey", _TABLE, ["tenant", "sha2", "learner"])
        return
    # SQLite cannot change a primary key in place: a new table, the rows copied, the old one dropped.
    _recreate(["tenant", "sha2", "learner"], with_learner=True)


def downgrade() -> None:
    # Sealed copies cannot go back to the shared clear table: only the clear rows (learner '') are kept.
    op.execute(sa.text(f"DELETE FROM {_TABLE} WHERE learner <> ''"))
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(f"{_TABLE}_pkey", _TABLE, type_="primary")
        op.create_primary_key(f"{_TABLE}_pkey", _TABLE, ["tenant", "sha2"])
        op.drop_column(_TABLE, "key_id")
        op.drop_column(_TABLE, "learner")
        return
    _recreate(["tenant", "sha2"], with_learner=False)


def _recreate(primary_key: list[str], *, with_learner: bool) -> None:
    """SQLite: the table rebuilt with ``primary_key``, with or without the learner and key_id columns."""
    columns: list[sa.Column[Any]] = [
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("sha2", sa.Text, nullable=False),
        sa.Column("content_type", sa.Text, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    ]
    if with_learner:
        columns += [
            sa.Column("learner", sa.Text, nullable=False, server_default=""),
            sa.Column("key_id", sa.Text, nullable=True),
        ]
    names = ", ".join(c.name for c in columns[:4])
    op.create_table(f"{_TABLE}_new", *columns, sa.PrimaryKeyConstraint(*primary_key, name=f"{_TABLE}_pkey"))
    op.execute(sa.text(f"INSERT INTO {_TABLE}_new ({names}) SELECT {names} FROM {_TABLE}"))
    op.drop_table(_TABLE)
    op.rename_table(f"{_TABLE}_new", _TABLE)
