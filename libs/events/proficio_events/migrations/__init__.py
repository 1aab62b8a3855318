"""Alembic migrations of the log schema, applied by :func:`proficio_events.migrate`."""
