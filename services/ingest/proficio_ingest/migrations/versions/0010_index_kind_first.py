"""The statement index's primary key leads with (kind, value), and on PostgreSQL compares values bytewise.

A batched POST writes ~7 index rows per statement, and inserting them into this key was about half of the
database's CPU. Each insertion compares the new key with ~20 others on its way down the tree: with the tenant
first, every comparison began with a text comparison of two equal tenants, and reading the columns after a
text column is the slow path of the index tuple; the values then went through the database's collation
(C.UTF-8 is not PostgreSQL's fast "C"). Now the kind (a small integer) and the value come first, and the value
column has the "C" collation: the tenant is compared only where kind and value are equal. Every query gives
tenant, kind and value by equality (the GET filters, Person, erasure by digest), so each still reads one range
of the key in position order. The values are digests, IRIs, UUIDs: only equality is asked of them, which is
the same bytewise in every deterministic collation. A query with a value bound as a parameter takes the
column's collation, so it matches the index.

On PostgreSQL the primary key is built again in place (one index build, the table is not rewritten; changing
the collation of a column alone does not rewrite it); on SQLite, which cannot change a primary key, the table
is copied (its collation stays BINARY, bytewise already).

Revision ID: ingest_0010
Revises: ingest_0009
Create Date: 2026-11-23
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "ingest_0010"
down_revision = "ingest_0009"
branch_labels = None
depends_on = None

_TABLE = "xapi_statement_index"
_PKEY = f"{_TABLE}_pkey"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # One statement: the old key is dropped before the column changes, so only the new one is built.
        op.execute(
            sa.text(
                f'ALTER TABLE {_TABLE} DROP CONSTRAINT {_PKEY}, ALTER COLUMN value TYPE text COLLATE "C",'
                f" ADD CONSTRAINT {_PKEY} PRIMARY KEY (kind, value, tenant, position) INCLUDE (narrow)"
            )
        )
        return
    _recreate(["kind", "value", "tenant", "position"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            sa.text(
                f"ALTER TABLE {_TABLE} DROP CONSTRAINT {_PKEY},"
                " ALTER COLUMN value TYPE text COLLATE pg_catalog.default,"
                f" ADD CONSTRAINT {_PKEY} PRIMARY KEY (tenant, kind, value, position) INCLUDE (narrow)"
            )
        )
        return
    _recreate(["tenant", "kind", "value", "position"])


def _recreate(primary_key: list[str]) -> None:
    """SQLite: the table rebuilt with ``primary_key``."""
    columns: list[sa.Column[Any]] = [
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("kind", sa.SmallInteger, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("narrow", sa.Boolean, nullable=False),
    ]
    names = ", ".join(c.name for c in columns)
    op.create_table(f"{_TABLE}_new", *columns, sa.PrimaryKeyConstraint(*primary_key, name=_PKEY))
    op.execute(sa.text(f"INSERT INTO {_TABLE}_new ({names}) SELECT {names} FROM {_TABLE}"))
    op.drop_table(_TABLE)
    op.rename_table(f"{_TABLE}_new", _TABLE)
