"""Alembic environment: runs on the connection handed over in ``config.attributes``."""

from __future__ import annotations

from alembic import context

from proficio_projector._schema import metadata

attributes = context.config.attributes
context.configure(
    connection=attributes["connection"],
    target_metadata=metadata,
    version_table=attributes["version_table"],
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
