"""The ingest service's tables, beside the log in the same database.

``credentials`` is configuration. The statement tables are an inline projection of the log: they are
written in the transaction that appends the statement events, and can be dropped and rebuilt from the
log with identical contents.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
Position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

credentials = sa.Table(
    "credentials",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("secret_hash", sa.LargeBinary, nullable=False),
    sa.Column("scopes", sa.Text, nullable=False),  # space-separated xAPI scopes
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("revoked_us", sa.BigInteger, nullable=True),
)

statements = sa.Table(
    "xapi_statements",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    sa.Column("statement_id", sa.Text, primary_key=True),
    sa.Column("position", Position, nullable=False),
    sa.Column("stored_us", sa.BigInteger, nullable=False),
    sa.Column("voided", sa.Boolean, nullable=False),
    sa.Column("is_voiding", sa.Boolean, nullable=False),
    sa.Column("target_id", sa.Text, nullable=True),  # the statement a StatementRef object points at
    sa.Column("credential", sa.Text, nullable=False),
    sa.Column("has_attachments", sa.Boolean, nullable=False),
    # The redacted statement (no personal data: see _personal.py), with `stored`; GET merges the opened
    # `sealed` part back in, or shows a pseudonymous actor once the learner's key is erased.
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("learner", sa.Text, nullable=False, server_default=""),  # the event's stream: the learner id
    sa.Column("sealed", sa.LargeBinary, nullable=True),  # the personal part, encrypted under key_id
    sa.Column("key_id", sa.Text, nullable=True),
    sa.Index("ix_xapi_statements_position", "tenant", "position", unique=True),
    # Only statements that point at another (migration ingest_0007): most point at none.
    sa.Index(
        "ix_xapi_statements_target",
        "tenant",
        "target_id",
        postgresql_where=sa.text("target_id IS NOT NULL"),
        sqlite_where=sa.text("target_id IS NOT NULL"),
    ),
    # No index by learner (migration ingest_0009): her statements are found through the log's stream index.
)

# What a statement can be found by: one row per (kind, value); agent values are keyed digests (HMAC with the
# tenant's identifier secret, see proficio_events._keyring), never identifiers, where ``narrow`` says the value is the
# statement's actor or object (the agent/activity filters) rather than only related to it (the
# related_agents/related_activities filters). Statements that point at another statement (StatementRef)
# also carry their target's rows, so filters match them as the spec asks.
# The key is (pair_key, position): pair_key is the first 16 bytes of SHA-256 over tenant, kind and value
# (``_projection.pair_key``), a fixed-width uuid on PostgreSQL (migration ingest_0011). Most of a batched POST's
# database work is inserting these rows (~7 a statement), and each insertion compares the new key with ~20 others
# on its way down the tree: two 16-byte values and two integers compare much faster than texts followed by the
# slow path of reading the columns after a text, and the index is half the size. Queries give tenant, kind and
# value by equality, hence one pair_key, then read in position order (index-only: narrow is included).
# tenant, kind and value stay as columns: the rows of a position are read back by them (references, erasure).
statement_index = sa.Table(
    "xapi_statement_index",
    metadata,
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("kind", sa.SmallInteger, nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("position", Position, nullable=False),
    sa.Column("narrow", sa.Boolean, nullable=False),
    sa.Column("pair_key", sa.Uuid(as_uuid=False), nullable=False),
    sa.PrimaryKeyConstraint("pair_key", "position", postgresql_include=["narrow"]),
)

# Attachment data, one copy per learner whose statement carries it: ``data`` is sealed under her key (``key_id``),
# so her erasure leaves it unreadable. Rows written before attachments were sealed have learner '' and their
# data in clear (key_id NULL).
attachments = sa.Table(
    "xapi_attachments",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    sa.Column("sha2", sa.Text, primary_key=True),
    sa.Column("content_type", sa.Text, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("learner", sa.Text, primary_key=True, server_default=""),
    sa.Column("key_id", sa.Text, nullable=True),
)

# The canonical definition of each activity, merged from the statements of credentials that may define.
activities = sa.Table(
    "xapi_activities",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    sa.Column("activity_id", sa.Text, primary_key=True),
    sa.Column("definition", sa.LargeBinary, nullable=False),
    sa.Column("position", Position, nullable=False),
)

# Tenant settings, an inline projection of TenantConfigured events.
tenants = sa.Table(
    "proficio_tenants",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    sa.Column("xapi_versions", sa.Text, nullable=False),  # space-separated, oldest first
    sa.Column("position", Position, nullable=False),
)

PROJECTION_TABLES = (statement_index, statements, attachments, activities)

# The xAPI documents (State, Activity Profile, Agent Profile), an inline projection of the Document* events:
# one row per document stream, the document as its latest event left it. A deleted document keeps its row
# as a tombstone (``deleted``, no content) so the next write knows the stream's version. Rebuilt by
# ``_documents.rebuild_documents``, not ``_projection.rebuild`` (hence not in PROJECTION_TABLES).
documents = sa.Table(
    "xapi_documents",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    sa.Column("stream", sa.Text, primary_key=True),  # document:<sha256 of the keys>
    sa.Column("resource", sa.Text, nullable=False),  # state | activity_profile | agent_profile
    sa.Column("activity_id", sa.Text, nullable=True),
    sa.Column("agent", sa.Text, nullable=True),  # keyed digest of the agent's IFI (an mbox as its mbox_sha1sum)
    sa.Column("registration", sa.Text, nullable=True),
    sa.Column("document_id", sa.Text, nullable=False),  # stateId or profileId
    sa.Column("content_type", sa.Text, nullable=True),
    sa.Column("content", sa.LargeBinary, nullable=True),
    sa.Column("etag", sa.Text, nullable=True),  # SHA-1 hex of content
    sa.Column("deleted", sa.Boolean, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),  # stream version of the latest event
    sa.Column("position", Position, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
    # Agent documents (State, Agent Profile) are personal: content sealed under the learner's key.
    sa.Column("learner", sa.Text, nullable=True),
    sa.Column("key_id", sa.Text, nullable=True),
    sa.Index("ix_xapi_documents_learner", "tenant", "learner"),
    sa.Index("ix_xapi_documents_context", "tenant", "resource", "activity_id", "agent", "registration"),
)

# Where each import from another LRS (proficio import-lrs) has got to; written with each page's statements.
lrs_imports = sa.Table(
    "proficio_lrs_imports",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    sa.Column("source", sa.Text, primary_key=True),  # the source's Statements resource
    sa.Column("next_url", sa.Text, nullable=True),  # the next page's `more` link; NULL once caught up
    sa.Column("run_consistent_through", sa.Text, nullable=True),
    sa.Column("since", sa.Text, nullable=True),  # Consistent-Through of the last finished run: the next run's since
    sa.Column("last_stored", sa.Text, nullable=True),
    sa.Column("statements", sa.BigInteger, nullable=False),
    sa.Column("pages", sa.BigInteger, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
)
