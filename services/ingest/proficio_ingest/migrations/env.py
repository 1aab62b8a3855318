"""Alembic environment: runs on the connection handed over in ``config.attributes``."""

from __future__ import annotations

from proficio_events._sql import run_alembic_env
from proficio_ingest._schema import metadata

run_alembic_env(metadata)
