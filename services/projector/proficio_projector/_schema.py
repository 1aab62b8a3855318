"""The runtime's own tables, beside the log (migrations in ``migrations/``).

Checkpoints of SQL-log consumers live in the log's ``checkpoints`` table (consumer ``projector:<name>@<generation>``,
partition = segment); Kafka consumers keep their offsets here, with the view, per topic partition.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
Position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: Every generation of every projector: one is ``active`` (serving), at most one ``building`` (a rebuild).
generations = sa.Table(
    "projector_generations",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("generation", sa.Integer, primary_key=True),
    sa.Column("code_version", sa.Integer, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    #: SQL-log segments of this generation (fixed for its life: each has its own checkpoint).
    sa.Column("segments", sa.Integer, nullable=False),
    #: The log position it was built through from the SQL log before going live (Kafka skips up to it).
    sa.Column("built_through", sa.BigInteger, nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("activated_us", sa.BigInteger, nullable=True),
)

#: Kafka offsets of a projector generation, committed in the transaction of the view rows they produced.
offsets = sa.Table(
    "projector_offsets",
    metadata,
    sa.Column("consumer", sa.Text, primary_key=True),
    sa.Column("topic", sa.Text, primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True),
    sa.Column("next_offset", sa.BigInteger, nullable=False),
    #: The highest log position applied from this partition: a re-sent copy of an older event is skipped.
    sa.Column("last_position", sa.BigInteger, nullable=False),
    #: The partition's end offset as the consumer last saw it (for lag and watermarks).
    sa.Column("highwater", sa.BigInteger, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
)

dead_letters = sa.Table(
    "projector_dead_letters",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("consumer", sa.Text, nullable=False),
    sa.Column("position", Position, nullable=False),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("stream", sa.Text, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("parked_us", sa.BigInteger, nullable=False),
    sa.Column("resolved_us", sa.BigInteger, nullable=True),
    sa.UniqueConstraint("consumer", "position", name="uq_dead_letters_consumer_position"),
    sa.Index("ix_dead_letters_open", "consumer", "resolved_us"),
)

#: Who works on what: a projector segment of the SQL log, or the relay. Expired leases may be taken over.
leases = sa.Table(
    "projector_leases",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("segment", sa.Integer, primary_key=True),
    sa.Column("owner", sa.Text, nullable=False),
    sa.Column("expires_us", sa.BigInteger, nullable=False),
)

#: Live workers of a lease group, so that each takes its fair share of the segments.
members = sa.Table(
    "projector_members",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("owner", sa.Text, primary_key=True),
    sa.Column("seen_us", sa.BigInteger, nullable=False),
)
