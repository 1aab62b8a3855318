"""The log contract on PostgreSQL 15 (a real server, started by the test session)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator

import pytest

from tests.support.postgres import PostgresServer, _as_postgres, port

from .contract import LogContract

pytestmark = pytest.mark.postgres


class TestPostgresLog(LogContract):
    @pytest.fixture
    def log_url(self, postgres: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
        name = f"{postgres.database}_{abs(hash(request.node.nodeid)) % 10**8}"
        url = postgres.create_database(name)
        yield url
        postgres.drop_database(name)

    @pytest.fixture
    def tamper(self, log_url: str) -> Callable[[str], None]:
        database = log_url.rsplit("/", 1)[1].split("?")[0]

        def run(sql: str) -> None:
            subprocess.run(
                _as_postgres(
                    "psql",
                    "-X",
                    "-q",
                    "-p",
                    port(),
                    "-d",
                    database,
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-c",
                    sql.replace("BLOB_TYPE", "bytea"),
                ),
                check=True,
                capture_output=True,
            )

        return run

    def hex(self, data: bytes) -> str:
        return f"'\\x{data.hex()}'::bytea"

    async def test_a_held_lock_gives_a_retryable_error_not_a_hang(self, log_url: str) -> None:
        """Maintenance that takes a conflicting lock (VACUUM, CREATE INDEX CONCURRENTLY...) makes appends wait
        at most lock_timeout, then fail with StoreUnavailableError, which callers may retry."""
        import asyncpg

        from proficio_events import NewEvent, StoreUnavailableError
        from proficio_events.backends.postgres import PostgresEventLog, asyncpg_dsn

        log = PostgresEventLog(log_url, lock_timeout_ms=300)
        await log.migrate()
        blocker = await asyncpg.connect(asyncpg_dsn(log_url))
        try:
            transaction = blocker.transaction()
            await transaction.start()
            await blocker.execute("LOCK TABLE events IN SHARE UPDATE EXCLUSIVE MODE")
            with pytest.raises(StoreUnavailableError):
                await log.append("t", [NewEvent.of("s", "E", {})])
            await transaction.rollback()
            assert (await log.append("t", [NewEvent.of("s", "E", {})])).events[0].position == 1
        finally:
            await blocker.close()
            await log.close()
