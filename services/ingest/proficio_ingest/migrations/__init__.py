"""Alembic migrations of the ingest service's tables (version table ``proficio_ingest_version``)."""
