"""Settings of the ingest service (``PROFICIO_*`` environment variables)."""

from __future__ import annotations

from proficio_events import StoreSettings


class IngestSettings(StoreSettings):
    host: str = "127.0.0.1"
    port: int = 8080
