"""Table definitions of the log. Changes to them go through Alembic (``migrations/``)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# On SQLite an INTEGER PRIMARY KEY is the rowid itself: one B-tree instead of two.
Position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

events = sa.Table(
    "events",
    metadata,
    sa.Column("position", Position, primary_key=True, autoincrement=False),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("stream", sa.Text, nullable=False),
    sa.Column("stream_version", sa.Integer, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("schema_version", sa.SmallInteger, nullable=False),
    sa.Column("recorded_us", sa.BigInteger, nullable=False),
    sa.Column("key", sa.Text, nullable=True),
    sa.Column("fingerprint", sa.LargeBinary, nullable=True),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("sealed", sa.LargeBinary, nullable=True),
    sa.Column("key_id", sa.Text, nullable=True),
    sa.Column("prev_hash", sa.LargeBinary, nullable=False),
    sa.Column("hash", sa.LargeBinary, nullable=False),
    sa.UniqueConstraint("tenant", "stream", "stream_version", name="uq_events_stream_version"),
    # NULL keys are distinct on both backends, so unkeyed events never collide.
    sa.UniqueConstraint("tenant", "key", name="uq_events_tenant_key"),
    sa.Index("ix_events_tenant_position", "tenant", "position"),
)

checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("consumer", sa.Text, primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
)

# Checkpoints signed with the operator's key (see _checkpoints.py). A table of their own, not events: a
# checkpoint is a statement *about* the chain at a position (its hash there), signing needs no write lock,
# and periodic checkpoints neither grow the tenant's chain nor reach every projector.
signed_checkpoints = sa.Table(
    "signed_checkpoints",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    sa.Column("position", Position, primary_key=True, autoincrement=False),
    sa.Column("key_id", sa.Text, primary_key=True),
    sa.Column("chain_hash", sa.LargeBinary, nullable=False),
    sa.Column("signed_us", sa.BigInteger, nullable=False),
    sa.Column("signature", sa.LargeBinary, nullable=False),
)

EVENT_COLUMNS = (
    "position",
    "tenant",
    "stream",
    "stream_version",
    "event_type",
    "schema_version",
    "recorded_us",
    "key",
    "fingerprint",
    "payload",
    "sealed",
    "key_id",
    "prev_hash",
    "hash",
)

# Per-learner data keys and per-tenant identifier secrets (see _keyring.py): beside the log, never in it,
# so destroying a key (erasure) rewrites no event and leaves the hash chain whole.
learner_keys = sa.Table(
    "learner_keys",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    sa.Column("key_id", sa.Text, primary_key=True),
    sa.Column("learner", sa.Text, nullable=False),
    sa.Column("data_key", sa.LargeBinary, nullable=True),  # NULL once erased
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("erased_us", sa.BigInteger, nullable=True),
    sa.Column("erased_by", sa.Text, nullable=True),
    # One live key per learner; erased ones stay as a record of the erasure.
    sa.Index(
        "ix_learner_keys_live",
        "tenant",
        "learner",
        unique=True,
        sqlite_where=sa.text("erased_us IS NULL"),
        postgresql_where=sa.text("erased_us IS NULL"),
    ),
)

tenant_secrets = sa.Table(
    "tenant_secrets",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    sa.Column("secret", sa.LargeBinary, nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
)

# The learner directory (see _directory.py): keyed digest of an identity -> its random learner id. Beside the
# log, never in it: erasure deletes her rows, and nothing then maps her identity to her learner id.
learner_directory = sa.Table(
    "learner_directory",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    sa.Column("digest", sa.Text, primary_key=True),
    sa.Column("learner", sa.Text, nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Index("ix_learner_directory_learner", "tenant", "learner"),
)
