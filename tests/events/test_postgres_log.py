"""The log contract on PostgreSQL 15 (a real server, started by the test session)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator, Sequence

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from proficio_events import StoredEvent
from tests.support.postgres import PostgresServer, _as_postgres, port
from tests.support.queries import record_queries

from .contract import LogContract

pytestmark = pytest.mark.postgres


async def idle_in_transaction(dsn: str) -> int:
    """Connections to the database that sit in an open transaction."""
    import asyncpg

    activity = await asyncpg.connect(dsn)
    try:
        count: int = await activity.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state LIKE 'idle in transaction%'"
        )
    finally:
        await activity.close()
    return count


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
        """Maintenance that takes a lock inserts conflict with (CREATE INDEX without CONCURRENTLY, say) makes
        appends wait at most lock_timeout, then fail with StoreUnavailableError, which callers may retry. VACUUM's
        and ANALYZE's lock (SHARE UPDATE EXCLUSIVE) does not stop them: appends take an advisory lock, not one on
        the table (autovacuum on the log stalled every append until it gave way)."""
        import asyncpg

        from proficio_events import NewEvent, StoreUnavailableError
        from proficio_events.backends.postgres import PostgresEventLog, asyncpg_dsn

        log = PostgresEventLog(log_url, lock_timeout_ms=300)
        await log.migrate()
        blocker = await asyncpg.connect(asyncpg_dsn(log_url))
        try:
            transaction = blocker.transaction()
            await transaction.start()
            await blocker.execute("LOCK TABLE events IN SHARE UPDATE EXCLUSIVE MODE")  # as VACUUM, ANALYZE
            assert (await log.append("t", [NewEvent.of("s", "E", {})])).events[0].position == 1
            await transaction.rollback()
            transaction = blocker.transaction()
            await transaction.start()
            await blocker.execute("LOCK TABLE events IN SHARE MODE")  # as CREATE INDEX
            with pytest.raises(StoreUnavailableError):
                await log.append("t", [NewEvent.of("s", "E", {})])
            await transaction.rollback()
            assert (await log.append("t", [NewEvent.of("s", "E", {})])).events[0].position == 2
        finally:
            await blocker.close()
            await log.close()

    async def test_a_group_commit_takes_three_round_trips_while_appends_wait(
        self, log_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Lock and read in one round trip, the insert, and ``COMMIT; BEGIN`` when more appends wait (the next
        group's transaction begun in the commit's round trip); the connection goes back once none is left."""
        import asyncio

        from proficio_events import NewEvent
        from proficio_events.backends.postgres import PostgresEventLog

        log = PostgresEventLog(log_url)
        await log.migrate()
        await log.append("t", [NewEvent.of("s", "E", {})])  # the writer's connection has its function now
        sent = record_queries(monkeypatch, ("execute", "fetch", "_executemany", "copy_records_to_table"))
        try:
            appends = 40
            log.max_group_events = 6  # all are queued before the first group starts: 7 groups
            results = await asyncio.gather(
                *(log.append("t", [NewEvent.of(f"s{n % 7}", "E", {"n": n})]) for n in range(appends))
            )
            monkeypatch.undo()
            commits = [s for s in sent if s.startswith("COMMIT")]
            groups = len(commits)
            assert groups == 7
            # Every group but the last began the next one's transaction as it committed; only the first BEGINs.
            assert commits.count("COMMIT; BEGIN") == groups - 1
            assert sent.count("BEGIN") == 1
            assert len(sent) == 3 * groups + 1  # BEGIN, then per group: locked read, insert, commit
            assert sorted(r.events[0].position for r in results) == list(range(2, appends + 2))
            assert log._held is None  # the drain ended: the kept connection went back to the pool
            assert await idle_in_transaction(log._dsn) == 0
        finally:
            await log.close()

    async def test_a_group_read_runs_in_the_groups_read_and_leaves_its_rows_to_the_handler(
        self, log_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An inline handler's read of its own tables (GroupRead) comes in the group's locked read, in the same
        round trip, per tenant, with the arguments made from the group's new events; its rows are in the append
        transaction for the handler, and only there."""
        import asyncio

        from proficio_events import GroupRead, GroupReadResult, NewEvent, group_read_rows
        from proficio_events.backends.postgres import PostgresEventLog

        log = PostgresEventLog(log_url)
        await log.migrate()
        async with log.transaction() as conn:
            raw = await conn.get_raw_connection()
            await raw.driver_connection.execute(  # type: ignore[union-attr]
                "CREATE TABLE side (tenant text, name text, n bigint);"
                " INSERT INTO side VALUES ('t', 'a', 1), ('t', 'b', 2), ('u', 'a', 3)"
            )
        read = GroupRead(
            name="side",
            sql="SELECT 100, s.n, NULL, s.name, NULL::int, NULL, NULL::smallint, NULL::bigint, NULL, NULL::bytea,"
            " NULL::bytea, NULL::bytea, NULL, NULL::bytea, NULL::bytea FROM side s"
            " WHERE s.tenant = $1 AND (s.name = ANY($2::text[]) OR s.name = ANY($3::text[]))",
            kinds=frozenset({100}),
            arguments=lambda batch: (sorted({e.decoded["name"] for e in batch}), []),
        )
        with pytest.raises(ValueError, match="kinds"):
            log.add_group_read(GroupRead("low", "", frozenset({5}), read.arguments))
        log.add_group_read(read)
        seen: list[tuple[str, GroupReadResult | None]] = []

        async def handler(conn: AsyncConnection, stored: Sequence[StoredEvent]) -> None:
            for tenant in sorted({e.tenant for e in stored}):
                seen.append((tenant, group_read_rows(conn, read, tenant)))

        await log.append("t", [NewEvent.of("s", "E", {"name": "x"})], inline=handler)  # makes the function
        seen.clear()
        sent = record_queries(monkeypatch)
        try:
            await asyncio.gather(
                log.append("t", [NewEvent.of("s", "E", {"name": "a"}), NewEvent.of("s", "E", {"name": "b"})],
                           inline=handler),
                log.append("u", [NewEvent.of("s", "E", {"name": "a"})], inline=handler),
            )  # fmt: skip
            monkeypatch.undo()
            assert not [q for q in sent if "side" in q]  # nothing read it but the group's read
            found = {tenant: result for tenant, result in seen}
            assert set(found) == {"t", "u"}
            t, u = found["t"], found["u"]
            assert t is not None
            assert u is not None
            assert t.arguments == (["a", "b"], [])
            assert u.arguments == (["a"], [])
            assert sorted((row[0], row[3], row[1]) for row in t.rows) == [(100, "a", 1), (100, "b", 2)]
            assert [(row[3], row[1]) for row in u.rows] == [("a", 3)]
            async with log.transaction() as conn:  # outside a group: nothing left behind
                assert group_read_rows(conn, read, "t") is None
        finally:
            await log.close()

    async def test_a_group_that_finds_the_lock_taken_takes_the_appends_queued_while_it_waits(
        self, log_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Another process holds the write lock: the group's read says so rather than wait inside it; the group
        waits for the lock, then takes the appends queued meanwhile, and all commit together."""
        import asyncio

        import asyncpg

        from proficio_events import NewEvent
        from proficio_events.backends.postgres import WRITE_LOCK, PostgresEventLog

        log = PostgresEventLog(log_url)
        await log.migrate()
        await log.append("t", [NewEvent.of("s", "E", {})])  # the writer's connection has its function now
        other = await asyncpg.connect(log._dsn)
        waiting = asyncio.Event()

        def told_to_wait(query: str) -> None:
            if query.startswith("SELECT pg_advisory_xact_lock"):
                waiting.set()

        sent = record_queries(monkeypatch, ("execute", "fetch"), ignore=other, on_sent=told_to_wait)
        try:
            holding = other.transaction()
            await holding.start()
            await other.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")  # another process's group
            first = asyncio.ensure_future(log.append("t", [NewEvent.of("s", "E", {"n": 1})]))
            await asyncio.wait_for(waiting.wait(), 10)  # told the lock is taken, it waits for it
            later = [asyncio.ensure_future(log.append("t", [NewEvent.of("s", "E", {"n": n})])) for n in (2, 3)]
            await asyncio.sleep(0.05)
            assert not first.done()
            await holding.rollback()
            results = await asyncio.gather(first, *later)
            monkeypatch.undo()
            assert [q for q in sent if q.startswith("COMMIT")] == ["COMMIT"]  # one group
            assert [r.events[0].position for r in results] == [2, 3, 4]
            assert await idle_in_transaction(log._dsn) == 0
        finally:
            await other.close()
            await log.close()

    async def test_a_raw_read_that_loses_the_database_is_store_unavailable_and_the_next_reconnects(
        self, log_url: str
    ) -> None:
        """The head and the pages of GET are read on raw reader connections: when the database goes away they fail
        as the log's other reads do (StoreUnavailableError, which runners retry), and a later read reconnects."""
        import contextlib

        import asyncpg

        from proficio_events import NewEvent, StoreUnavailableError
        from proficio_events.backends.postgres import PostgresEventLog

        log = PostgresEventLog(log_url)
        await log.migrate()
        killer = await asyncpg.connect(log._dsn)
        try:
            await log.append("t", [NewEvent.of("s", "E", {})])
            assert await log.head() == (1, (await log.read_after(0))[0].recorded_us)
            await killer.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            # The reader's connection was closed under it: an error the runners retry, or (if asyncpg has seen the
            # server's goodbye already) a new connection; never asyncpg's own error.
            with contextlib.suppress(StoreUnavailableError):
                assert await log.max_position() == 1
            assert await log.max_position() == 1  # a new reader
        finally:
            await killer.close()
            await log.close()
        unreachable = PostgresEventLog(log_url.replace(f":{port()}/", ":1/"))
        try:
            with pytest.raises(StoreUnavailableError):
                await unreachable.head()
        finally:
            await unreachable.close()

    async def test_a_group_waiting_for_the_lock_sees_what_the_holder_committed(self, log_url: str) -> None:
        """The group's read takes the lock and only then reads (a statement of its own, a fresh snapshot): an
        append committed by another writer while this one waited is seen, so versions and positions follow it."""
        import asyncio

        from proficio_events import ConcurrencyError, NewEvent
        from proficio_events.backends.postgres import PostgresEventLog

        first, second = PostgresEventLog(log_url), PostgresEventLog(log_url)
        await first.migrate()
        try:
            await first.append("t", [NewEvent.of("s", "E", {})])
            await second.append("t", [NewEvent.of("other", "E", {})])  # its writer connection is set up
            release = asyncio.Event()
            holding = asyncio.Event()

            async def slow(conn: AsyncConnection, events: Sequence[StoredEvent]) -> None:
                holding.set()
                await release.wait()  # first holds the lock, its append not yet committed

            held = asyncio.create_task(
                first.append("t", [NewEvent.of("s", "E", {"by": "first"}, expected_version=1)], inline=slow)
            )
            await holding.wait()
            waiting = asyncio.create_task(second.append("t", [NewEvent.of("s", "E", {"by": "second"})]))
            stale = asyncio.create_task(
                second.append("t", [NewEvent.of("s", "E", {"by": "stale"}, expected_version=1)])
            )
            await asyncio.sleep(0.3)
            assert not waiting.done()
            assert not stale.done()
            release.set()
            assert (await held).events[0].stream_version == 2
            after = (await waiting).events[0]
            assert (after.stream_version, after.position) == (3, 4)
            with pytest.raises(ConcurrencyError):
                await stale
        finally:
            await first.close()
            await second.close()

    async def test_an_append_queued_while_the_writer_is_given_back_is_committed(
        self, log_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A writer that kept its connection (its next transaction begun) gives it back, rolled back, when it finds
        nothing queued; an append that arrives meanwhile finds that drain still running, which takes it."""
        import asyncio

        import asyncpg

        from proficio_events import NewEvent
        from proficio_events.backends import postgres

        class AlwaysBeginNext(postgres._OpenedTransaction):
            def __init__(self, driver: asyncpg.Connection, begin_next: object = None) -> None:
                super().__init__(driver, begin_next=lambda: True)

        monkeypatch.setattr(postgres, "_OpenedTransaction", AlwaysBeginNext)
        log = postgres.PostgresEventLog(log_url)
        await log.migrate()
        late: list[asyncio.Task[object]] = []
        give_back = log._release_writer
        given_back: list[bool] = []

        async def releasing() -> None:
            given_back.append(log._held is not None)
            if not late:  # an append arrives while the drain gives its connection back
                late.append(asyncio.create_task(log.append("t", [NewEvent.of("s", "E", {"late": True})])))
                await asyncio.sleep(0)
            await give_back()

        log._release_writer = releasing  # type: ignore[method-assign]
        try:
            await log.append("t", [NewEvent.of("s", "E", {})])
            assert late
            stored = await asyncio.wait_for(late[0], 10)
            assert stored.events[0].position == 2  # type: ignore[attr-defined]
            await asyncio.sleep(0.1)
            assert given_back == [True, True]
            # The kept transactions were rolled back, not left open in the pool.
            assert await idle_in_transaction(log._dsn) == 0
        finally:
            await log.close()

    async def test_a_young_log_is_analyzed_early_so_the_group_read_uses_its_key_index(self, log_url: str) -> None:
        """Until autovacuum's first ANALYZE, the planner took the (tenant, position) index for the group read's key
        lookups; the log runs ANALYZE itself as it grows past its first few hundred events."""
        import asyncio

        import asyncpg

        from proficio_events import NewEvent
        from proficio_events.backends.postgres import ANALYZE_FIRST, PostgresEventLog

        log = PostgresEventLog(log_url)
        await log.migrate()
        observer = await asyncpg.connect(log._dsn)
        try:

            async def analyzed() -> bool:
                return bool(await observer.fetchval("SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables"
                                                    " WHERE relname = 'events'"))  # fmt: skip

            await log.append("t", [NewEvent.of("s", "E", {}, key="k0", fingerprint=b"f" * 32)])
            assert not await analyzed()
            batch = [NewEvent.of(f"s{n}", "E", {}, key=f"k{n}", fingerprint=b"f" * 32) for n in range(1, ANALYZE_FIRST)]
            await log.append("t", batch)
            await log.append("t", [NewEvent.of("s", "E", {}, key="last", fingerprint=b"f" * 32)])  # the read sees them
            for _ in range(100):
                if await analyzed():
                    break
                await asyncio.sleep(0.1)
            assert await analyzed()
            plan = await observer.fetchval(
                "EXPLAIN (FORMAT JSON) SELECT * FROM events x WHERE x.tenant = 't' AND x.key = 'k7' ORDER BY x.key"
                " LIMIT 1"
            )
            assert "uq_events_tenant_key" in str(plan)
        finally:
            await observer.close()
            await log.close()
