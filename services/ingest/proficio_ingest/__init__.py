"""Proficio's xAPI ingest service."""

from ._app import create_app
from ._settings import IngestSettings

__all__ = ["IngestSettings", "create_app"]
