"""Alembic environment: runs on the connection handed over in ``config.attributes``."""

from __future__ import annotations

from proficio_events._schema import metadata
from proficio_events._sql import run_alembic_env

run_alembic_env(metadata)
