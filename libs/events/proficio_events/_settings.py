"""Where the log lives, from ``PROFICIO_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from ._open import sqlite_url


class StoreSettings(BaseSettings):
    """``PROFICIO_DATABASE_URL`` (PostgreSQL, production) wins over ``PROFICIO_DATA_DIR`` (embedded SQLite)."""

    model_config = SettingsConfigDict(env_prefix="PROFICIO_", extra="ignore")

    data_dir: Path = Path("data")
    database_url: str | None = None

    def log_url(self) -> str:
        return self.database_url or sqlite_url(self.data_dir)
