"""The log contract on the embedded SQLite backend."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from proficio_events import open_event_log, sqlite_url

from .contract import LogContract


class TestSqliteLog(LogContract):
    @pytest.fixture
    def log_url(self, tmp_path: Path) -> str:
        return sqlite_url(tmp_path / "data")

    @pytest.fixture
    def tamper(self, log_url: str) -> Callable[[str], None]:
        path = log_url.split(":///", 1)[1]

        def run(sql: str) -> None:
            with sqlite3.connect(path) as db:
                db.execute(sql.replace("BLOB_TYPE", "BLOB"))

        return run

    def hex(self, data: bytes) -> str:
        return f"X'{data.hex()}'"

    async def test_uses_wal_and_a_file_under_the_data_dir(self, log_url: str, tmp_path: Path) -> None:
        log = await open_event_log(log_url)
        await log.close()
        assert (tmp_path / "data" / "proficio.db").exists()
        with sqlite3.connect(tmp_path / "data" / "proficio.db") as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
