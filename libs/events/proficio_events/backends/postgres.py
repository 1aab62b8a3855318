"""The production backend: PostgreSQL through asyncpg.

Appends take one transaction-scoped advisory lock (``WRITE_LOCK``, with a lock timeout) so that insert order is
commit order: a reader that has seen position N can never later find a smaller position commit. The lock is
taken by the group commit's one read (a function of the session, ``pg_temp.proficio_group_state``), and a
group that commits while more appends wait begins the next one's transaction in the same round trip
(``COMMIT; BEGIN``): three round trips a group (read, insert, commit) rather than five. When another
process holds the lock, the read says so at once; the group then waits for it and takes the appends queued
meanwhile before it reads (one round trip more, but whole groups rather than halves).
Plain SELECTs, VACUUM and ANALYZE are not blocked by that lock, nor block it. Positions are allocated
under the lock as max + 1, so the log has no holes at all, not even from rolled-back appends. Batches go in with one
``INSERT ... SELECT FROM unnest(...)`` prepared once for any batch size (COPY for large ones). A
statement trigger on the events table NOTIFYs the channel ``proficio_log`` with the newest position
(migration 0002), so waiting readers wake at once, whoever wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from .._chain import Row
from .._envelope import GENESIS, StoredEvent, StreamHead
from .._errors import StoreUnavailableError
from .._keyring import DataKey
from .._log import GROUP_READ_FIRST_KIND, GROUP_READ_TYPES, GroupRead, GroupReadResult
from .._schema import EVENT_COLUMNS, checkpoints
from .._sql import GroupState, LockTaken, RawReader, SqlEventLog, prefetched, wait_for_flag

CHANNEL = "proficio_log"
_log = logging.getLogger("proficio.log")
#: Most connections fetch_row keeps per process (requests beyond wait for one).
READERS = 8
#: The log's size (events) at which this process first runs ANALYZE itself, then each time it has grown this many
#: times, up to ANALYZE_EARLY_UNTIL (past which autovacuum's own schedule is soon enough); see _analyze_early.
ANALYZE_FIRST = 500
ANALYZE_GROWTH = 4
ANALYZE_EARLY_UNTIL = 2_000_000
#: The appends' lock: a transaction-scoped advisory lock, which every writer of the log takes (not a lock on the
#: events table, which autovacuum's and ANALYZE's SHARE UPDATE EXCLUSIVE would conflict with: appends stalled
#: behind them, up to deadlock_timeout, until autovacuum gave way).
WRITE_LOCK = 7220002
#: From this many rows on, a batch goes in by binary COPY rather than one unnest() insert.
COPY_THRESHOLD = 200
_TYPES = (
    "bigint",
    "text",
    "text",
    "int",
    "text",
    "smallint",
    "bigint",
    "text",
    "bytea",
    "bytea",
    "bytea",
    "text",
    "bytea",
    "bytea",
)
_INSERT = (
    f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"${i}::{kind}[]" for i, kind in enumerate(_TYPES, start=1))
    + ")"
)

_STREAM_VERSIONS = sa.text(
    "SELECT s.stream, (SELECT e.stream_version FROM events e WHERE e.tenant = :tenant AND e.stream = s.stream"
    " ORDER BY e.stream_version DESC LIMIT 1) FROM unnest(CAST(:streams AS text[])) AS s(stream)"
)


# The group commit's reads for one tenant in one round trip, on the driver connection of the append
# transaction (SQLAlchemy Core would cost several times the query here): rows of kind 0 are the events
# already stored under the batches' keys, kind 1 the current version of each stream (in `position`),
# kind 2 the log's head (position, recorded_us) and the tenant's last hash (in `hash`), kind 3 the newest
# event of each stream of a decided append (version in `position`; `hash` not NULL when its key is destroyed),
# kind 4 the live data key of each learner the group may seal for and names ($5) (learner in `stream`, key in
# `sealed`), kind 5 the learner ids the directory holds for the batches' digests ($6, `NewEvent.learner_of`; digest in
# `key`, learner in `stream`) with the current version of each one's stream (in `position`) and, when $7 (the group
# may seal for them), her live data key as in kind 4 (NULL if she has none): one directory lookup per digest, where a
# branch of its own for those keys looked each digest up a second time. A learner found both ways comes twice.
_GROUP_KEYS = f"""
SELECT 0 AS kind, {", ".join("e." + c for c in EVENT_COLUMNS)}
  FROM unnest($2::text[]) AS q(key)
  JOIN LATERAL (SELECT * FROM events x WHERE x.tenant = $1 AND x.key = q.key ORDER BY x.key LIMIT 1) AS e ON true
"""
_GROUP_STATE = """
SELECT 1, (SELECT v.stream_version FROM events v WHERE v.tenant = $1 AND v.stream = s.stream
           ORDER BY v.stream_version DESC LIMIT 1)::bigint,
       NULL, s.stream, NULL::int, NULL, NULL::smallint, NULL::bigint, NULL, NULL::bytea, NULL::bytea, NULL::bytea,
       NULL, NULL::bytea, NULL::bytea
  FROM unnest($3::text[]) AS s(stream)
UNION ALL
SELECT 2, h.position, NULL, NULL, NULL::int, NULL, NULL::smallint, h.recorded_us, NULL, NULL::bytea, NULL::bytea,
       NULL::bytea, NULL, NULL::bytea,
       (SELECT t.hash FROM events t WHERE t.position = (SELECT max(m.position) FROM events m WHERE m.tenant = $1))
  FROM (SELECT 1) AS one
  LEFT JOIN LATERAL (SELECT position, recorded_us FROM events ORDER BY position DESC LIMIT 1) AS h ON true
UNION ALL
SELECT 3, coalesce(d.stream_version, 0)::bigint, NULL, s.stream, NULL::int, d.event_type, NULL::smallint,
       d.recorded_us, NULL, NULL::bytea, d.payload, NULL::bytea, d.key_id, NULL::bytea,
       CASE WHEN d.key_id IS NOT NULL AND NOT EXISTS (
           SELECT 1 FROM learner_keys k WHERE k.tenant = $1 AND k.key_id = d.key_id AND k.data_key IS NOT NULL
       ) THEN '\\x01'::bytea END
  FROM unnest($4::text[]) AS s(stream)
  LEFT JOIN LATERAL (SELECT v.stream_version, v.event_type, v.recorded_us, v.payload, v.key_id FROM events v
                     WHERE v.tenant = $1 AND v.stream = s.stream ORDER BY v.stream_version DESC LIMIT 1) AS d ON true
UNION ALL
SELECT 4, NULL::bigint, NULL, k.learner, NULL::int, NULL, NULL::smallint, NULL::bigint, NULL, NULL::bytea, NULL::bytea,
       k.data_key, k.key_id, NULL::bytea, NULL::bytea
  FROM unnest($5::text[]) AS q(learner)
  JOIN LATERAL (SELECT * FROM learner_keys x WHERE x.tenant = $1 AND x.learner = q.learner AND x.erased_us IS NULL
                ORDER BY x.learner LIMIT 1) AS k ON true
UNION ALL
SELECT 5, (SELECT v.stream_version FROM events v WHERE v.tenant = $1 AND v.stream = d.learner
           ORDER BY v.stream_version DESC LIMIT 1)::bigint,
       NULL, d.learner, NULL::int, NULL, NULL::smallint, NULL::bigint, d.digest, NULL::bytea, NULL::bytea,
       k.data_key, k.key_id, NULL::bytea, NULL::bytea
  FROM unnest($6::text[]) AS q(digest)
  JOIN LATERAL (SELECT x.learner, x.digest FROM learner_directory x WHERE x.tenant = $1 AND x.digest = q.digest
                ORDER BY x.digest LIMIT 1) AS d ON true
  LEFT JOIN LATERAL (SELECT x.data_key, x.key_id FROM learner_keys x
                     WHERE $7 AND x.tenant = $1 AND x.learner = d.learner AND x.erased_us IS NULL
                     ORDER BY x.learner LIMIT 1) AS k ON true
"""

# The group's read as a function of the session: it takes the write lock, then reads in a statement of its own,
# whose snapshot (a VOLATILE function's statements each take a fresh one) sees every append committed before
# the lock was granted. Lock and read are then one round trip. (It does not wait for the lock: held by another
# writer, it returns one row saying so; see SqlEventLog._append_group.) Created once per connection, in pg_temp: the
# query stays here with the code that reads its rows, and no migration has to follow its changes.
#
# Every branch looks rows up one by one from an array where it can (unnest, then a LATERAL subquery of equalities on
# all the columns of a unique index, LIMIT 1 so that it is not flattened into a join): an index scan per value
# whatever the table's size. (One OR over two key sources read the whole key table; the tenant's last hash was found
# by walking the log backwards past other tenants' events.) Planning the whole query on each call, as PostgreSQL
# chose to, cost more than running it, so its plan is the generic one, made once per connection, with sequential
# scans off. All but one branch pick the same indexes on an empty table as on a large one; the key lookups
# (_GROUP_KEYS) on a nearly empty table chose the narrower (tenant, position) index and would have kept it as the
# table grew, so they are planned on each call (EXECUTE: a small query, cheap to plan, seeing the current stats), and
# only when there are keys to look up (a batch of statements this LRS gave ids has none: ``NewEvent.new_key``; the
# planning alone was ~0.2 ms of the database's CPU per group). The inline handlers' group reads (GroupRead) follow in
# the same call, each with two parameters of its own.


def _group_state_function(reads: Sequence[GroupRead]) -> str:
    """The function's definition, with the log's group reads after its own (read i gets parameters 8+2i, 9+2i)."""
    own = (
        " IF cardinality($2) > 0 THEN RETURN QUERY EXECUTE $k$" + _GROUP_KEYS + "$k$ USING $1, $2; END IF;"
        " RETURN QUERY " + _GROUP_STATE + ";"
    )
    theirs = "".join(" RETURN QUERY " + _renumbered(read.sql, 6 + 2 * i) + ";" for i, read in enumerate(reads))
    # $7 says whether the group may seal (kind 5 then reads the learners' keys too).
    parameters = ", ".join(["text", *["text[]"] * 5, "boolean", *["text[]"] * (2 * len(reads))])
    return (
        f"CREATE OR REPLACE FUNCTION pg_temp.proficio_group_state({parameters})"
        " RETURNS TABLE (" + ", ".join(f"c{i} {kind}" for i, kind in enumerate(GROUP_READ_TYPES)) + ")"
        " LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_generic_plan SET enable_seqscan = off"
        " AS $fn$ BEGIN" + _LOCK_OR_SAY_TAKEN + own + theirs + " END $fn$"
    )


# The lock, without waiting: if another writer holds it, one row of kind -1 (LockTaken) and nothing else. A writer
# that already holds it gets it at once.
_LOCK_OR_SAY_TAKEN = (
    f" IF NOT pg_try_advisory_xact_lock({WRITE_LOCK}) THEN"
    " RETURN QUERY SELECT -1, " + ", ".join(f"NULL::{kind}" for kind in GROUP_READ_TYPES[1:]) + "; RETURN; END IF;"
)
_TAKEN = -1


def _renumbered(sql: str, shift: int) -> str:
    """A group read's query with its own parameters ($2, $3) moved after those before it ($1 stays the tenant)."""
    return re.sub(r"\$([23])\b", lambda found: f"${int(found[1]) + shift}", sql)


def _locked_group_state(reads: int) -> str:
    return f"SELECT * FROM pg_temp.proficio_group_state({', '.join(f'${i}' for i in range(1, 8 + 2 * reads))})"


_HEAD = "SELECT position, recorded_us FROM events ORDER BY position DESC LIMIT 1"
#: What a raw reader's query raises when the database is gone or going (refused, closed, shut down; a query sent
#: while asyncpg is still taking in the server's goodbye finds its protocol in another state).
_CONNECTION_LOST = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
)
#: Set in a pooled connection's ``info`` once it has the function (to the names of the group reads it runs).
_HAS_FUNCTION = "proficio_group_state"


def _ssl_mode(url: URL) -> str | None:
    return url.query.get("sslmode") or url.query.get("ssl")  # type: ignore[return-value]


def sqlalchemy_url(url: str) -> URL:
    """The address for SQLAlchemy's asyncpg dialect, which takes the TLS mode as ``ssl``."""
    parsed = make_url(url)
    mode = _ssl_mode(parsed)
    parsed = parsed.set(drivername="postgresql+asyncpg").difference_update_query(["sslmode", "ssl"])
    return parsed.update_query_dict({"ssl": mode}) if mode else parsed


def asyncpg_dsn(url: str) -> str:
    """A libpq-style address for asyncpg from any PostgreSQL URL (``sslmode`` or ``ssl`` both understood)."""
    parsed = make_url(url)
    mode = _ssl_mode(parsed)
    parsed = parsed.set(drivername="postgresql").difference_update_query(["sslmode", "ssl"])
    if mode:
        parsed = parsed.update_query_dict({"sslmode": mode})
    return parsed.render_as_string(hide_password=False)


class _PostgresReader(RawReader):
    """Reads on the asyncpg connection; a scan is a server-side cursor, one batch ahead of the caller."""

    def __init__(self, driver: asyncpg.Connection) -> None:
        self._driver = driver

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        rows: list[Row] = await self._driver.fetch(sql, *args)
        return rows

    async def scan(self, sql: str, args: Sequence[Any], batch: int) -> AsyncGenerator[list[Row], None]:
        cursor = await self._driver.cursor(sql, *args)
        async for rows in prefetched(lambda: cursor.fetch(batch)):
            yield rows


class _OpenedTransaction:
    """A transaction begun on the asyncpg connection by a statement of ours, ended as SQLAlchemy's asyncpg
    adapter ends the transactions it starts itself (it calls ``commit()`` or ``rollback()`` on this).

    ``begin_next`` is asked at commit time: when it says so, the next transaction is begun in the same round trip
    (and ``began_next`` is set)."""

    def __init__(self, driver: asyncpg.Connection, begin_next: Callable[[], bool] = lambda: False) -> None:
        self._driver = driver
        self._begin_next = begin_next
        self.began_next = False

    async def commit(self) -> None:
        if self._begin_next():
            # One simple query of two statements: if the COMMIT fails, the BEGIN is not run.
            await self._driver.execute("COMMIT; BEGIN")
            self.began_next = True
        else:
            await self._driver.execute("COMMIT")

    async def rollback(self) -> None:
        if not self._driver.is_closed():
            await self._driver.execute("ROLLBACK")


class PostgresEventLog(SqlEventLog):
    """The log in a PostgreSQL database."""

    def __init__(self, url: str, *, lock_timeout_ms: int = 10_000, pool_size: int = 10) -> None:
        # lock_timeout for the session rather than SET LOCAL per append: one round trip less on the hot path.
        super().__init__(
            create_async_engine(
                sqlalchemy_url(url),
                pool_size=pool_size,
                max_overflow=pool_size,
                connect_args={"server_settings": {"lock_timeout": str(int(lock_timeout_ms))}},
            )
        )
        self._dsn = asyncpg_dsn(url)
        self._listener: asyncpg.Connection | None = None
        self._listener_lock = asyncio.Lock()
        # Connections of fetch_row, outside SQLAlchemy's pool: lent and returned as they are, with no checkout,
        # reset or transaction (each query is a statement of its own), ~40 µs less CPU per read than the pool.
        self._readers: list[asyncpg.Connection] = []
        self._reader_slots = asyncio.Semaphore(READERS)
        self._analyze_at = ANALYZE_FIRST
        self._analyzing: asyncio.Task[None] | None = None
        self._held: AsyncConnection | None = None

    async def _lock_migrations(self, conn: AsyncConnection) -> None:
        # Two processes starting at once must not both create the schema.
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(7220001)"))

    @asynccontextmanager
    async def _writer(self) -> AsyncIterator[AsyncConnection]:
        # The connection the last group kept, its next transaction already begun (see _OpenedTransaction), or one
        # from the pool. The write lock is taken by the group's read (_group_state), not here.
        conn, self._held = self._held, None
        begun = conn is not None
        if conn is None:
            conn = await self.engine.connect()
        keep = False
        try:
            raw = await conn.get_raw_connection()
            # Past SQLAlchemy's lazy BEGIN on the driver connection: SQLAlchemy is told the transaction is open, and
            # ends it through _OpenedTransaction (COMMIT, or COMMIT; BEGIN, or ROLLBACK).
            adapter: Any = raw.dbapi_connection
            if adapter._started:  # never: a connection comes back with its transaction ended
                raise RuntimeError("the writer's connection is already in a transaction")
            driver: asyncpg.Connection = raw.driver_connection
            reads = tuple(read.name for read in self._group_reads)
            if conn.info.get(_HAS_FUNCTION) != reads:
                # Before BEGIN: a rollback must not take it away.
                await driver.execute(_group_state_function(self._group_reads))
                conn.info[_HAS_FUNCTION] = reads
            transaction = _OpenedTransaction(driver, begin_next=lambda: bool(self._pending))
            adapter._transaction = transaction
            adapter._started = True
            if not begun:
                await driver.execute("BEGIN")
            async with conn.begin():
                yield conn
            keep = transaction.began_next
        finally:
            if keep:
                self._held = conn
            else:
                await conn.close()

    async def _wait_for_lock(self, conn: AsyncConnection) -> None:
        raw = await conn.get_raw_connection()
        await raw.driver_connection.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")  # type: ignore[union-attr]

    async def _release_writer(self) -> None:
        conn, self._held = self._held, None
        if conn is not None:
            try:
                # The pool's reset would not end it: SQLAlchemy's adapter saw that transaction's COMMIT, not its BEGIN.
                raw = await conn.get_raw_connection()
                await raw.driver_connection.execute("ROLLBACK")  # type: ignore[union-attr]
            finally:
                await conn.close()

    _driver_errors = (asyncpg.PostgresError, asyncpg.InterfaceError)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[RawReader]:
        async with self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: asyncpg.Connection = raw.driver_connection
            # One snapshot for the walk and its side queries; read-only, so it takes no lock appends wait on.
            async with driver.transaction(isolation="repeatable_read", readonly=True):
                yield _PostgresReader(driver)

    def _may_defer(self, rows: list[tuple[Any, ...]]) -> bool:
        return len(rows) < COPY_THRESHOLD  # larger batches go in by COPY, on their own

    async def _insert_rows(self, conn: AsyncConnection, rows: list[tuple[Any, ...]]) -> None:
        raw = await conn.get_raw_connection()
        driver: asyncpg.Connection = raw.driver_connection
        if len(rows) >= COPY_THRESHOLD:
            await driver.copy_records_to_table("events", records=rows, columns=EVENT_COLUMNS)
        else:
            await driver.execute(_INSERT, *(list(column) for column in zip(*rows, strict=True)))

    async def _group_state(
        self,
        conn: AsyncConnection,
        wanted: dict[str, tuple[list[str], set[str], list[str]]],
        heads: Mapping[str, Collection[str]] | None = None,
        sealing: Mapping[str, Collection[str]] | None = None,
        *,
        reads: Mapping[str, Mapping[str, tuple[list[str], list[str]]]] | None = None,
    ) -> GroupState:
        raw = await conn.get_raw_connection()
        driver: asyncpg.Connection = raw.driver_connection
        known: dict[tuple[str, str], StoredEvent] = {}
        versions: dict[str, dict[str, int]] = {}
        chain: dict[str, bytes] = {}
        found_heads: dict[str, dict[str, StreamHead]] = {}
        learners: dict[tuple[str, str], str] = {}
        keys: dict[tuple[str, str], DataKey] | None = None if sealing is None else {}
        position = recorded = 0
        # The reads this connection's function runs (one added since runs from the next connection or group on).
        by_name = {read.name: read for read in self._group_reads}
        group_reads = [by_name[name] for name in conn.info.get(_HAS_FUNCTION, ())] if reads is not None else []
        read_of = {kind: read for read in group_reads for kind in read.kinds}
        read_rows: dict[tuple[str, str], GroupReadResult] = {}
        statement = _locked_group_state(len(group_reads))
        for tenant, (event_keys, streams, digests) in wanted.items():
            versions[tenant] = {}
            head_streams = sorted((heads or {}).get(tenant, ()))
            if head_streams:
                found_heads[tenant] = {}
            named = sorted((sealing or {}).get(tenant, ()))
            args: list[Any] = [tenant, event_keys, sorted(streams), head_streams, named, digests, sealing is not None]
            for read in group_reads:
                read_arguments = (reads or {})[tenant][read.name]
                args.extend(read_arguments)
                read_rows[(read.name, tenant)] = GroupReadResult(read_arguments, [])
            rows = await driver.fetch(statement, *args)
            if rows and rows[0][0] == _TAKEN:
                raise LockTaken
            for row in rows:
                kind = row[0]
                if kind >= GROUP_READ_FIRST_KIND:
                    read_rows[(read_of[kind].name, tenant)].rows.append(row)
                elif kind == 0:
                    event = StoredEvent(*row[1:])
                    known[(tenant, event.key or "")] = event
                elif kind == 1 or kind == 5:
                    if kind == 5:
                        learners[(tenant, row[8])] = row[3]
                        if keys is not None and row[12] is not None:
                            keys[(tenant, row[3])] = DataKey(row[12], bytes(row[11]))
                    if row[1] is not None:
                        versions[tenant][row[3]] = int(row[1])
                elif kind == 4:
                    if keys is not None:
                        keys[(tenant, row[3])] = DataKey(row[12], bytes(row[11]))
                elif kind == 3:
                    payload = None if row[10] is None else bytes(row[10])
                    found_heads[tenant][row[3]] = StreamHead(
                        row[3], int(row[1]), row[5], int(row[7] or 0), payload, row[12], row[14] is not None
                    )
                else:
                    position, recorded = row[1] or 0, row[7] or 0
                    chain[tenant] = row[14] or GENESIS
        if position >= self._analyze_at:
            self._analyze_early(position)
        return GroupState(
            known, versions, chain, position, recorded,
            heads=found_heads, keys=keys, learners=learners, read_rows=read_rows,
        )  # fmt: skip

    def _analyze_early(self, position: int) -> None:
        """Statistics for a young log, in the background: until autovacuum's first ANALYZE (a minute or more after
        the rows came) the planner sees a nearly empty table, and the group read's key lookups take the narrower
        (tenant, position) index, reading all of a tenant's events for each key. ANALYZE also makes the plans
        cached on every connection be made again."""
        while self._analyze_at <= position:
            self._analyze_at *= ANALYZE_GROWTH
        if self._analyze_at > ANALYZE_EARLY_UNTIL * ANALYZE_GROWTH or self._analyzing is not None:
            return

        async def analyze() -> None:
            try:
                conn = await asyncpg.connect(self._dsn)
                try:
                    await conn.execute("ANALYZE events, learner_keys, learner_directory")
                finally:
                    await conn.close()
            except (OSError, asyncpg.PostgresError) as exc:  # autovacuum will do it later
                _log.info("early ANALYZE of the log failed: %s", exc)
            finally:
                self._analyzing = None

        self._analyzing = asyncio.get_running_loop().create_task(analyze())

    async def _stream_versions(self, conn: AsyncConnection, tenant: str, streams: set[str]) -> dict[str, int]:
        rows = await conn.execute(_STREAM_VERSIONS, {"tenant": tenant, "streams": list(streams)})
        return {stream: version for stream, version in rows if version is not None}

    def _in(self, column: sa.ColumnElement[Any], values: list[str]) -> sa.ColumnElement[bool]:
        # One prepared statement for any number of values.
        return column == sa.func.any(sa.literal(values, sa.ARRAY(sa.Text)))

    async def _upsert_checkpoint(self, conn: AsyncConnection, values: list[dict[str, Any]]) -> None:
        statement = pg_insert(checkpoints).values(values)
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=["consumer", "partition"],
                set_={"position": statement.excluded.position, "updated_us": statement.excluded.updated_us},
            )
        )

    async def fetch_row(self, sql: str, *args: Any) -> Sequence[Any] | None:
        rows = await self.fetch_rows(sql, *args)
        return rows[0] if rows else None

    async def fetch_rows(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        async with self._reader_slots:
            while self._readers and self._readers[-1].is_closed():  # the server closed it since: not lent
                self._readers.pop()
            try:
                conn = self._readers.pop() if self._readers else await asyncpg.connect(self._dsn)
            except _CONNECTION_LOST as exc:
                raise StoreUnavailableError(f"the log could not be read: {exc}") from exc
            try:
                rows: list[Sequence[Any]] = await conn.fetch(sql, *args)
            except BaseException as exc:
                conn.terminate()  # failed or cancelled half-way: never lent again
                if isinstance(exc, _CONNECTION_LOST):
                    # As the log's other reads fail when the database goes away (a runner retries these).
                    raise StoreUnavailableError(f"the log could not be read: {exc}") from exc
                raise
            self._readers.append(conn)
            return rows

    async def max_position(self) -> int:
        row = await self.fetch_row(_HEAD)
        head = 0 if row is None else int(row[0])
        self._known_head = max(self._known_head, head)
        return head

    async def head(self) -> tuple[int, int]:
        row = await self.fetch_row(_HEAD)
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self._committed(int(payload))

    async def _ensure_listener(self) -> None:
        async with self._listener_lock:
            if self._listener is not None and not self._listener.is_closed():
                return
            self._listener = await asyncpg.connect(self._dsn)
            await self._listener.add_listener(CHANNEL, self._on_notify)

    async def _prepare_wait(self) -> None:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            await self._ensure_listener()

    async def _wait_remote(self, changed: asyncio.Event, timeout: float) -> None:
        if self._listener is None or self._listener.is_closed():
            # No listener: poll; the caller re-reads the head each round.
            timeout = min(timeout, 0.1)
        await wait_for_flag(changed, timeout)

    async def close(self) -> None:
        if self._analyzing is not None:
            with contextlib.suppress(Exception):
                await self._analyzing
        with contextlib.suppress(Exception):
            await self._release_writer()
        readers, self._readers = self._readers, []
        for reader in readers:
            with contextlib.suppress(Exception):
                await reader.close()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None
        await super().close()
