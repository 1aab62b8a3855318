"""The statement index's key becomes (pair_key, position), pair_key a fixed-width digest of (tenant, kind, value).

Inserting ~7 index rows per statement was most of a batched POST's database work, and most of that was comparing
keys on the way down the tree: (kind, value, tenant, position) compares a text and then reads the columns after
it on the index tuple's slow path. pair_key is the first 16 bytes of SHA-256 over ``tenant \\x1f kind \\x1f
value`` (``_projection.pair_key``): a uuid on PostgreSQL, so (pair_key, position) compares as two fixed-width
values, and the index is about half the size. Every query gives tenant, kind and value by equality, so it asks
for one pair_key and reads one range of the key in position order, as before.

On PostgreSQL the digest of the rows already stored is computed by the database with the same formula (the
table is rewritten once, under an exclusive lock: on a large log, run it in a maintenance window); on SQLite the
table is copied with the digests computed here.

Revision ID: ingest_0011
Revises: ingest_0010
Create Date: 2026-11-23
"""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "ingest_0011"
down_revision = "ingest_0010"
branch_labels = None
depends_on = None

_TABLE = "xapi_statement_index"
_PKEY = f"{_TABLE}_pkey"
_COLUMNS = ("tenant", "kind", "value", "position", "narrow")
#: ``_projection.pair_key`` in SQL: the first 16 bytes of SHA-256 over the UTF-8 of tenant, kind and value.
_PG_PAIR_KEY = (
    "encode(substring(sha256(convert_to(tenant || E'\\x1f' || kind::text || E'\\x1f' || value, 'UTF8'))"
    " FROM 1 FOR 16), 'hex')::uuid"
)


def _pair_key(tenant: str, kind: int, value: str) -> str:
    # The migration keeps its own copy: the package's may change after it, the rows written by it may not.
    return hashlib.sha256(f"{tenant}\x1f{kind}\x1f{value}".encode()).hexdigest()[:32]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.text(f"ALTER TABLE {_TABLE} ADD COLUMN pair_key uuid"))
        op.execute(sa.text(f"UPDATE {_TABLE} SET pair_key = {_PG_PAIR_KEY}"))
        op.execute(
            sa.text(
                f"ALTER TABLE {_TABLE} ALTER COLUMN pair_key SET NOT NULL, DROP CONSTRAINT {_PKEY},"
                f" ADD CONSTRAINT {_PKEY} PRIMARY KEY (pair_key, position) INCLUDE (narrow)"
            )
        )
        return
    _recreate(with_pair_key=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            sa.text(
                f"ALTER TABLE {_TABLE} DROP CONSTRAINT {_PKEY}, DROP COLUMN pair_key,"
                f" ADD CONSTRAINT {_PKEY} PRIMARY KEY (kind, value, tenant, position) INCLUDE (narrow)"
            )
        )
        return
    _recreate(with_pair_key=False)


def _recreate(*, with_pair_key: bool) -> None:
    """SQLite (which cannot change a primary key): the table copied into one with the new key."""
    columns: list[sa.Column[Any]] = [
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("kind", sa.SmallInteger, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("narrow", sa.Boolean, nullable=False),
    ]
    if with_pair_key:
        columns.append(sa.Column("pair_key", sa.Uuid(as_uuid=False), nullable=False))
        key = sa.PrimaryKeyConstraint("pair_key", "position", name=_PKEY)
    else:
        key = sa.PrimaryKeyConstraint("kind", "value", "tenant", "position", name=_PKEY)
    new = op.create_table(f"{_TABLE}_new", *columns, key)
    names = ", ".join(_COLUMNS)
    if with_pair_key:
        bind = op.get_bind()
        rows = bind.execute(sa.text(f"SELECT {names} FROM {_TABLE}")).all()
        for start in range(0, len(rows), 5000):
            chunk = rows[start : start + 5000]
            op.bulk_insert(
                new,
                [dict(zip(_COLUMNS, row, strict=True), pair_key=_pair_key(row[0], row[1], row[2])) for row in chunk],
            )
    else:
        op.execute(sa.text(f"INSERT INTO {_TABLE}_new ({names}) SELECT {names} FROM {_TABLE}"))
    op.drop_table(_TABLE)
    op.rename_table(f"{_TABLE}_new", _TABLE)
