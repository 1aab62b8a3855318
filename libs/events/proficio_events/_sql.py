"""The part of the log that SQLite and PostgreSQL share: append protocol, reads, checkpoints, verify.

A backend supplies how to take the log's write lock, how to insert a batch of rows, how to look
rows up by a list of values and how to wait for other writers' commits.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import _keyring
from ._bulk import bulk_insert, defer_insert, drop_deferred, flush_deferred
from ._chain import BrokenLink, ChainWalk, Row, row_hash
from ._checkpoints import Checkpoint, Signer, key_id_of
from ._directory import PENDING_LEARNER, enroll_learners, find_learners
from ._envelope import (
    GENESIS,
    AppendResult,
    ChainProblem,
    NewEvent,
    StoredEvent,
    StreamHead,
    VerifyReport,
    chain_hash,
    default_fingerprint,
)
from ._errors import (
    ConcurrencyError,
    DuplicateEventError,
    EventStoreError,
    InvalidBatchError,
    LogTamperedError,
    StoreUnavailableError,
)
from ._keyring import DataKey, live_keys, seal
from ._log import _GROUP_READ_ROWS, GROUP_READ_FIRST_KIND, Decide, EventLog, GroupRead, GroupReadResult, InlineHandler
from ._schema import EVENT_COLUMNS, checkpoints, events, signed_checkpoints

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

MIGRATIONS = Path(__file__).parent / "migrations"
_COLUMNS = [events.c[name] for name in EVENT_COLUMNS]
#: The most events one group commit takes by default (``SqlEventLog.max_group_events``); a single larger
#: batch is still taken whole.
MAX_GROUP_EVENTS = 20_000


@dataclass
class _Decided:
    """An append whose batch is chosen under the write lock (``append_decided``)."""

    streams: frozenset[str]
    seal_for: frozenset[str]
    decide: Decide
    #: The directory digest of the learner ``PENDING_LEARNER`` stands for (in ``seal_for`` and the events).
    learner_of: str | None = None
    #: Her learner id, once the group commit has resolved ``learner_of``.
    learner: str | None = None

    @property
    def bound_seal_for(self) -> set[str]:
        """``seal_for`` with her learner id in place of ``PENDING_LEARNER`` (left out until resolved)."""
        bound = set(self.seal_for - {PENDING_LEARNER})
        if PENDING_LEARNER in self.seal_for and self.learner is not None:
            bound.add(self.learner)
        return bound


@dataclass
class _Request:
    tenant: str
    batch: list[NewEvent]
    inline: InlineHandler | None
    future: asyncio.Future[AppendResult]
    decided: _Decided | None = None


@dataclass
class GroupState:
    known: dict[tuple[str, str], StoredEvent]
    versions: dict[str, dict[str, int]]
    chain: dict[str, bytes]
    head_position: int
    head_recorded_us: int
    #: Per tenant, the newest event of each stream a decided append named.
    heads: dict[str, dict[str, StreamHead]] = field(default_factory=dict)
    #: The live keys of the learners asked for, by (tenant, learner), if the backend read them with the rest.
    keys: dict[tuple[str, str], DataKey] | None = None
    #: (tenant, directory digest) -> learner id, for the digests the directory holds (``NewEvent.learner_of``).
    learners: dict[tuple[str, str], str] = field(default_factory=dict)
    #: (read name, tenant) -> what a ``GroupRead`` found, for the reads the backend ran with the rest.
    read_rows: dict[tuple[str, str], GroupReadResult] = field(default_factory=dict)


class LockTaken(Exception):
    """Raised by a backend's ``_group_state`` that found the write lock held by another writer and did not wait."""


class _InlineFailed(Exception):
    """A batch's inline work raised: the group's transaction is rolled back."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _settle(request: _Request, outcome: AppendResult | BaseException) -> None:
    if request.future.done():
        return
    if isinstance(outcome, AppendResult):
        request.future.set_result(outcome)
    else:
        request.future.set_exception(outcome)


def _stored(
    position: int,
    tenant: str,
    event: NewEvent,
    version: int,
    recorded: int,
    prev: bytes,
    opened: bytes | None = None,
    sealing: tuple[bytes, str | None] | None = None,
) -> StoredEvent:
    """The stored form of ``event``; with ``sealing`` ((sealed, key_id), ``_sealed``), its private data ``opened``
    is stored as that rather than the event's own ``sealed`` and ``key_id``."""
    sealed, key_id = (event.sealed, event.key_id) if sealing is None else sealing
    fingerprint = event.fingerprint
    if fingerprint is None and event.key is not None:  # what event.identity() gives, with the sealed body stored
        fingerprint = default_fingerprint(event.event_type, event.payload, sealed)
    digest = chain_hash(
        prev,
        position=position,
        tenant=tenant,
        stream=event.stream,
        stream_version=version,
        event_type=event.event_type,
        schema_version=event.schema_version,
        recorded_us=recorded,
        key=event.key,
        fingerprint=fingerprint,
        payload=event.payload,
        sealed=sealed,
        key_id=key_id,
    )
    return StoredEvent(
        position, tenant, event.stream, version, event.event_type, event.schema_version, recorded, event.key,
        fingerprint, event.payload, sealed, key_id, prev, digest, event.decoded, opened, event.prepared,
    )  # fmt: skip


def _row(event: StoredEvent) -> tuple[Any, ...]:
    return (
        event.position, event.tenant, event.stream, event.stream_version, event.event_type, event.schema_version,
        event.recorded_us, event.key, event.fingerprint, event.payload, event.sealed, event.key_id,
        event.prev_hash, event.hash,
    )  # fmt: skip


def _decide(tenant: str, decided: _Decided, heads: Mapping[str, StreamHead]) -> list[NewEvent]:
    """A decided append's batch, from the heads of its streams, held to what it declared, with its learner's
    id in place (``learner_of``)."""
    batch = list(decided.decide({s: heads[s] for s in decided.streams}))
    _validate(tenant, batch)
    for index, event in enumerate(batch):
        if event.stream not in decided.streams:
            raise InvalidBatchError(f"event {index} is on stream {event.stream!r}, which the append did not name")
        if event.key is not None:
            raise InvalidBatchError(f"event {index} of a decided append has a key")
        if event.private is not None and event.seal_for not in decided.seal_for:
            raise InvalidBatchError(f"event {index} is sealed for a learner the append did not name")
        if event.learner_of is not None and event.learner_of != decided.learner_of:
            raise InvalidBatchError(f"event {index} names a learner the append did not name")
    if decided.learner is None:
        return batch
    return [_bind(e, decided.learner) if e.learner_of is not None else e for e in batch]


def _learners(group: list[_Request]) -> dict[str, set[str]]:
    """Per tenant, every learner the group may seal private data for (repeats too: a read costs nothing more)."""
    found: dict[str, set[str]] = {}
    for request in group:
        if request.decided is not None and request.decided.seal_for:
            found.setdefault(request.tenant, set()).update(request.decided.seal_for - {PENDING_LEARNER})
        for e in request.batch:
            if e.private is not None and e.seal_for and e.seal_for != PENDING_LEARNER:
                found.setdefault(request.tenant, set()).add(e.seal_for)
    return found


def _head(event: StoredEvent) -> StreamHead:
    return StreamHead(event.stream, event.stream_version, event.event_type, event.recorded_us, event.payload,
                      event.key_id)  # fmt: skip


def now_us() -> int:
    return time.time_ns() // 1000


def _validate(tenant: str, batch: Sequence[NewEvent]) -> None:
    if not tenant:
        raise InvalidBatchError("an event batch needs a tenant")
    seen: set[str] = set()
    for index, event in enumerate(batch):
        if not event.stream:
            raise InvalidBatchError(f"event {index} has no stream")
        if not event.event_type:
            raise InvalidBatchError(f"event {index} has no event type")
        if event.key is not None:
            if event.key in seen:
                raise InvalidBatchError(f"key {event.key!r} appears twice in one batch")
            seen.add(event.key)
        if event.learner_of is None and PENDING_LEARNER in (event.stream, event.seal_for):
            raise InvalidBatchError(f"event {index} wants its learner's id but names no learner (learner_of)")
        if event.private is not None:
            if not event.seal_for:
                raise InvalidBatchError(f"event {index} has private data but no learner to seal it for")
            if event.sealed is not None:
                raise InvalidBatchError(f"event {index} has both private data and a sealed body")
            if event.key is not None and event.fingerprint is None:
                raise InvalidBatchError(f"event {index} has private data and a key but no fingerprint")


def _sealed(event: NewEvent, tenant: str, keys: dict[tuple[str, str], DataKey]) -> tuple[bytes, str | None]:
    """(sealed, key_id): the event's private data sealed under its learner's key (in clear only for the benchmark's
    baseline, ``_keyring._ENCRYPT`` off). Handed to ``_stored`` as they are, without a sealed copy of the event
    (a NewEvent costs ~1.5 µs to construct, and this runs for every statement)."""
    assert event.private is not None
    assert event.seal_for is not None
    if not _keyring._ENCRYPT:
        return event.private, None
    key = keys[(tenant, event.seal_for)]
    return seal(key, tenant, event.stream, event.private), key.key_id


def _bind(event: NewEvent, learner: str) -> NewEvent:
    """The event with its learner's id where it has ``PENDING_LEARNER`` (see ``NewEvent.learner_of``)."""
    stream = learner if event.stream == PENDING_LEARNER else event.stream
    seal_for = learner if event.seal_for == PENDING_LEARNER else event.seal_for
    payload, decoded = event.payload, event.decoded
    if isinstance(decoded, dict) and decoded.get("learner") == PENDING_LEARNER:
        decoded = {**decoded, "learner": learner}
        payload = orjson.dumps(decoded)
    return NewEvent(stream, event.event_type, payload, event.key, event.fingerprint, event.expected_version,
                    event.schema_version, event.sealed, event.key_id, decoded, event.private, seal_for,
                    event.learner_of, event.prepared, event.new_key)  # fmt: skip


def run_migrations(
    sync_conn: sa.Connection, location: Path = MIGRATIONS, version_table: str = "alembic_version"
) -> None:
    """Bring one package's tables to its newest Alembic revision on an open connection.

    Each package that owns tables (the log, ingest's query tables, projector views) keeps its own
    migration history under its own ``version_table``; their ``env.py`` reads it from the attributes.
    """
    config = Config()
    config.set_main_option("script_location", str(location))
    config.attributes["connection"] = sync_conn
    config.attributes["version_table"] = version_table
    command.upgrade(config, "heads")  # every branch: packages may add independent migrations


def run_alembic_env(metadata: sa.MetaData) -> None:
    """The body of every package's Alembic ``env.py``: migrate on the connection and version table that
    ``run_migrations`` handed over in ``config.attributes``."""
    from alembic import context

    attributes = context.config.attributes
    context.configure(
        connection=attributes["connection"],
        target_metadata=metadata,
        version_table=attributes.get("version_table", "alembic_version"),
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


class SqlEventLog(EventLog):
    """An :class:`EventLog` on a SQL database reached through a SQLAlchemy async engine."""

    #: The most events one group commit takes (a single larger batch is still taken whole). Smaller groups
    #: let the database store one group while this process parses the requests of the next, rather than
    #: every client's request waiting in one group and then all of them being parsed while the database
    #: idles (``PROFICIO_GROUP_MAX_EVENTS`` for the ingest service).
    max_group_events: int = MAX_GROUP_EVENTS

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._known_head = 0
        self._changed = asyncio.Event()
        self._pending: list[_Request] = []
        self._draining: asyncio.Task[None] | None = None
        self._group_reads: list[GroupRead] = []

    def add_group_read(self, read: GroupRead) -> None:
        if any(r.name == read.name for r in self._group_reads):
            return  # the same handler's read, registered again (by a second service on this log)
        if min(read.kinds, default=0) < GROUP_READ_FIRST_KIND:
            raise ValueError(f"a group read's kinds start at {GROUP_READ_FIRST_KIND}: {sorted(read.kinds)}")
        taken = {kind for r in self._group_reads for kind in r.kinds}
        if taken & read.kinds:
            raise ValueError(f"group read {read.name!r} uses kinds another read uses: {sorted(taken & read.kinds)}")
        self._group_reads = [*self._group_reads, read]

    # -- what a backend provides ---------------------------------------------------------------

    @abc.abstractmethod
    def _writer(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection in a write transaction that holds the log's append lock, or takes it in ``_group_state``
        (which every group commit runs before it writes); committed when the context ends without error."""

    async def _release_writer(self) -> None:
        """Give back whatever ``_writer`` kept for the next group once no append is left to commit."""

    @abc.abstractmethod
    async def _insert_rows(self, conn: AsyncConnection, rows: list[tuple[Any, ...]]) -> None:
        """Insert event rows (tuples in ``EVENT_COLUMNS`` order)."""

    @abc.abstractmethod
    def _in(self, column: sa.ColumnElement[Any], values: list[str]) -> sa.ColumnElement[bool]:
        """``column`` is one of ``values``, in the form the backend runs best."""

    @abc.abstractmethod
    async def _upsert_checkpoint(self, conn: AsyncConnection, values: list[dict[str, Any]]) -> None: ...

    #: Exceptions of the database driver itself (statements run on the driver connection, past SQLAlchemy).
    _driver_errors: tuple[type[Exception], ...] = ()

    def _may_defer(self, rows: list[tuple[Any, ...]]) -> bool:
        """Whether a batch's rows may wait for the inline handlers' insert (see ``defer_insert``)."""
        return False

    async def _announce(self, conn: AsyncConnection, position: int) -> None:
        """Tell other processes, inside the append transaction, that ``position`` exists."""

    async def _prepare_wait(self) -> None:
        """Start whatever tells this process of other processes' commits (before the head is read)."""

    async def _wait_remote(self, changed: asyncio.Event, timeout: float) -> None:
        """Sleep until another process may have appended, or ``timeout``."""
        await wait_for_flag(changed, timeout)

    async def migrate(self) -> None:
        await self.migrate_package(MIGRATIONS, "alembic_version")

    async def migrate_package(self, location: Path, version_table: str) -> None:
        """Apply a package's Alembic migrations (at ``location``) to the log's database."""
        async with self.engine.connect() as conn:
            # A write transaction from the start: on SQLite a read transaction that later writes can fail
            # at once (SQLITE_BUSY) when another process wrote in between.
            live = await self._begin_write(conn)
            async with live.begin():
                await self._lock_migrations(live)
                await live.run_sync(run_migrations, location, version_table)

    async def _lock_migrations(self, conn: AsyncConnection) -> None:
        """Keep two processes from migrating at once (SQLite's write lock already does)."""

    # -- append ----------------------------------------------------------------------------------

    async def append(
        self, tenant: str, events_: Sequence[NewEvent], *, inline: InlineHandler | None = None
    ) -> AppendResult:
        """Append atomically. Concurrent appends in this process share one transaction (group commit):
        one lock and one durable commit for all of them, each batch still all-or-nothing on its own."""
        batch = list(events_)
        _validate(tenant, batch)
        if not batch:
            return AppendResult((), ())
        return await self._queue(_Request(tenant, batch, inline, asyncio.get_running_loop().create_future()))

    async def append_decided(
        self,
        tenant: str,
        streams: Collection[str],
        decide: Decide,
        *,
        seal_for: Collection[str] = (),
        learner_of: str | None = None,
        inline: InlineHandler | None = None,
    ) -> AppendResult:
        """Decided in the group commit: the heads come in the group's one read under the lock (no round trip
        of its own), and a decision sees the batches of the group decided before it."""
        if not tenant:
            raise InvalidBatchError("an event batch needs a tenant")
        if not streams:
            raise InvalidBatchError("a decided append must name the streams it may append to")
        if PENDING_LEARNER in seal_for and learner_of is None:
            raise InvalidBatchError("a decided append sealing for PENDING_LEARNER must name her (learner_of)")
        decided = _Decided(frozenset(streams), frozenset(seal_for), decide, learner_of)
        return await self._queue(_Request(tenant, [], inline, asyncio.get_running_loop().create_future(), decided))

    async def _queue(self, request: _Request) -> AppendResult:
        self._pending.append(request)
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        return await request.future

    async def _drain(self) -> None:
        """The one writer of this process: commits queued appends in groups until none are left."""
        try:
            while self._pending:
                await self._commit_group(None)
                if not self._pending:
                    # Appends queued while this awaits find the drain still running: the loop takes them.
                    await self._release_writer()
        except BaseException:
            await self._release_writer()
            raise

    def _take_group(self, group: list[_Request] | None = None) -> list[_Request]:
        """Queued appends, in order, into ``group`` (a new one by default) while they fit ``max_group_events``."""
        group = [] if group is None else group
        size = sum(len(r.batch) for r in group)
        while self._pending and (not group or size + len(self._pending[0].batch) <= self.max_group_events):
            request = self._pending.pop(0)
            if not request.future.done():  # the caller may have gone away
                group.append(request)
                size += len(request.batch)
        return group

    async def _commit_group(self, chosen: list[_Request] | None) -> None:
        """Commit ``chosen``, or (None) what is queued once the write transaction is open (SQLite: once the
        write lock is held, so that appends arriving while this writer waits for it join the group)."""
        group: list[_Request] = chosen or []
        unavailable: tuple[type[BaseException], ...] = (DBAPIError, InterfaceError, OSError, *self._driver_errors)
        try:
            async with self._writer() as conn:
                if chosen is None:
                    group = self._take_group()
                outcomes = await self._append_group(conn, group, may_grow=chosen is None) if group else []
        except _InlineFailed as failed:
            if len(group) == 1:
                error = failed.error
                if isinstance(error, unavailable) and not isinstance(error, IntegrityError):  # the store failed
                    error = StoreUnavailableError(f"the log could not take the batch: {error}")
                _settle(group[0], error)
            else:
                # One batch's inline work failed: give every batch a transaction of its own, so only it fails.
                for request in group:
                    await self._commit_group([request])
            return
        except IntegrityError as exc:
            # Cannot happen under the write lock unless the database was changed behind our back.
            for request in group or self._take_group():
                _settle(request, EventStoreError(f"the log refused the batch: {exc.orig}"))
            return
        except unavailable as exc:
            # Also when the lock was not granted in time: the queued appends fail rather than wait forever.
            # (Driver errors: from the statements a backend runs on the driver connection directly.)
            for request in group or self._take_group():
                _settle(request, StoreUnavailableError(f"the log could not take the batch: {exc}"))
            return
        except BaseException as exc:
            for request in group or self._take_group():
                _settle(request, exc)
            raise
        head = max((o.last_position for o in outcomes if isinstance(o, AppendResult)), default=0)
        if head:
            self._committed(head)
        for request, outcome in zip(group, outcomes, strict=True):
            _settle(request, outcome)

    async def _append_group(
        self, conn: AsyncConnection, group: list[_Request], *, may_grow: bool = False
    ) -> list[AppendResult | Exception]:
        """Check and store every batch of the group under the write lock, in one insert.

        A backend whose group read finds the lock held by another writer (another process) says so rather than
        wait inside it: the group then waits for the lock, takes the appends queued meanwhile (``may_grow``: the
        group was the queue's, not a retry's), and reads. Contending writers otherwise each commit half-size
        groups, the appends that arrive while one waits forming the next."""
        if not group:
            return []
        try:
            found = await self._read_group(conn, group)
        except LockTaken:
            await self._wait_for_lock(conn)
            if may_grow:
                self._take_group(group)
            found = await self._read_group(conn, group)
        if found.read_rows:
            conn.info[_GROUP_READ_ROWS] = found.read_rows
        try:
            return await self._store_group(conn, group, found)
        finally:
            conn.info.pop(_GROUP_READ_ROWS, None)

    async def _wait_for_lock(self, conn: AsyncConnection) -> None:
        """Wait for the write lock (a backend whose ``_group_state`` may raise ``LockTaken``)."""
        raise NotImplementedError(f"{type(self).__name__} does not give up the write lock in its group read")

    async def _read_group(self, conn: AsyncConnection, group: list[_Request]) -> GroupState:
        tenants = sorted({r.tenant for r in group})
        wanted = {
            tenant: (
                # Keys the writer made just now (``NewEvent.new_key``) cannot be stored yet: not looked up.
                sorted(
                    {e.key for r in group if r.tenant == tenant for e in r.batch if e.key is not None and not e.new_key}
                ),
                {e.stream for r in group if r.tenant == tenant for e in r.batch if e.stream != PENDING_LEARNER},
                sorted(
                    {e.learner_of for r in group if r.tenant == tenant for e in r.batch if e.learner_of}
                    | {r.decided.learner_of for r in group if r.tenant == tenant and r.decided and r.decided.learner_of}
                ),
            )
            for tenant in tenants
        }
        heads_wanted: dict[str, set[str]] = {}
        for r in group:
            if r.decided is not None:
                heads_wanted.setdefault(r.tenant, set()).update(r.decided.streams)
        arguments: dict[str, dict[str, tuple[list[str], list[str]]]] | None = None
        if self._group_reads:
            arguments = {}
            for tenant in tenants:
                batch = [e for r in group if r.tenant == tenant for e in r.batch]
                arguments[tenant] = {read.name: read.arguments(batch) for read in self._group_reads}
        return await self._group_state(
            conn, wanted, heads_wanted, _learners(group) if _keyring._ENCRYPT else None, reads=arguments
        )

    async def _store_group(
        self, conn: AsyncConnection, group: list[_Request], found: GroupState
    ) -> list[AppendResult | Exception]:
        known: dict[tuple[str, str], StoredEvent] = found.known
        versions: dict[str, dict[str, int]] = found.versions
        heads: dict[str, dict[str, StreamHead]] = found.heads
        for tenant, found_heads in heads.items():
            versions[tenant].update((s, h.version) for s, h in found_heads.items() if h.version)
        chain: dict[str, bytes] = dict(found.chain)
        position: int = found.head_position
        # Recorded times never go backwards, even if the clock does: they become xAPI `stored`.
        recorded = max(now_us(), found.head_recorded_us)
        batches = await self._bind_learners(conn, group, found)
        keys = await self._sealing_keys(conn, group, batches, known, found.keys)

        outcomes: list[AppendResult | Exception] = []
        rows: list[tuple[Any, ...]] = []
        new_by_handler: dict[InlineHandler, list[StoredEvent]] = {}
        for request, batch in zip(group, batches, strict=True):
            tenant = request.tenant
            if request.decided is not None:
                try:
                    batch = _decide(tenant, request.decided, heads[tenant])
                except Exception as exc:  # the request's own failure (a precondition, say): the group goes on
                    outcomes.append(exc)
                    continue
                if not batch:
                    outcomes.append(AppendResult((), ()))
                    continue
                batch = await self._enroll_decided(conn, tenant, request.decided, batch, found, keys)
            conflicts = sorted(
                e.key
                for e in batch
                if e.key is not None and (tenant, e.key) in known and known[(tenant, e.key)].fingerprint != e.identity()
            )
            if conflicts:
                outcomes.append(DuplicateEventError(tenant, conflicts))
                continue
            stream_versions = dict(versions[tenant])
            out: list[StoredEvent] = []
            created: list[bool] = []
            fresh: list[StoredEvent] = []
            prev = chain[tenant]
            failure: Exception | None = None
            for new in batch:
                if new.key is not None and (tenant, new.key) in known:
                    out.append(known[(tenant, new.key)])
                    created.append(False)
                    continue
                current = stream_versions.get(new.stream, 0)
                if new.expected_version is not None and new.expected_version != current:
                    failure = ConcurrencyError(tenant, new.stream, new.expected_version, current)
                    break
                stream_versions[new.stream] = current + 1
                opened = new.private
                sealing = None if opened is None else _sealed(new, tenant, keys)
                appended = _stored(position + len(fresh) + 1, tenant, new, current + 1, recorded, prev, opened, sealing)
                prev = appended.hash
                fresh.append(appended)
                out.append(appended)
                created.append(True)
            if failure is not None:
                outcomes.append(failure)
                continue
            # The batch holds: make its effects visible to the batches after it.
            versions[tenant] = stream_versions
            chain[tenant] = prev
            position += len(fresh)
            tenant_heads = heads.get(tenant)
            for appended in fresh:
                if appended.key is not None:
                    known[(tenant, appended.key)] = appended
                if tenant_heads is not None and appended.stream in tenant_heads:
                    tenant_heads[appended.stream] = _head(appended)
                rows.append(_row(appended))
            if fresh and request.inline is not None:
                new_by_handler.setdefault(request.inline, []).extend(fresh)
            outcomes.append(AppendResult(tuple(out), tuple(created)))
        if rows:
            if new_by_handler and self._may_defer(rows):
                # Into the handlers' own insert statement: one round trip less for a typical append.
                defer_insert(conn, events, rows)
            else:
                await self._insert_rows(conn, rows)
            try:
                for handler, new_events in new_by_handler.items():
                    try:
                        await handler(conn, new_events)
                    except Exception as exc:
                        raise _InlineFailed(exc) from exc
                await flush_deferred(conn)
            finally:
                drop_deferred(conn)
            await self._announce(conn, position)
        return outcomes

    async def _bind_learners(
        self, conn: AsyncConnection, group: list[_Request], found: GroupState
    ) -> list[list[NewEvent]]:
        """Each request's batch with its learners' ids in place (``NewEvent.learner_of``).

        ``found`` has the ids the directory holds (looked up with the group's state); the missing ones are
        created here, one insert per tenant, in the append transaction: the group's batches share them, and an
        erasure (same lock) cannot come between. Repeats (events already stored) create no row and stay unbound
        (they are answered with the stored event). The requests' own batches are left as they are: if the
        transaction rolls back and a batch is retried, its learners are resolved again.
        """
        learners = found.learners
        missing: dict[str, set[str]] = {}
        for request in group:
            # A decided append's learner is enrolled only once its decision holds (``_enroll_decided``): one that
            # refuses (a failed precondition) leaves no id and no key behind.
            for e in request.batch:
                stored = e.key is not None and (request.tenant, e.key) in found.known
                if e.learner_of and (request.tenant, e.learner_of) not in learners and not stored:
                    missing.setdefault(request.tenant, set()).add(e.learner_of)
        for tenant, digests in missing.items():
            resolved, created = await enroll_learners(conn, tenant, digests, found={})
            older = {learner for learner in resolved.values() if learner not in created}
            if older:  # written meanwhile by a transaction outside the log's lock (a roster import): its stream
                found.versions[tenant].update(await self._stream_versions(conn, tenant, older))
            learners.update(((tenant, d), learner) for d, learner in resolved.items())
        batches: list[list[NewEvent]] = []
        for request in group:
            if request.decided is not None and request.decided.learner_of:
                request.decided.learner = learners.get((request.tenant, request.decided.learner_of))
            if not any(e.learner_of for e in request.batch):
                batches.append(request.batch)
                continue
            batches.append(
                [
                    _bind(e, learners[(request.tenant, e.learner_of)])
                    if e.learner_of and (request.tenant, e.learner_of) in learners
                    else e
                    for e in request.batch
                ]
            )
        return batches

    async def _enroll_decided(
        self,
        conn: AsyncConnection,
        tenant: str,
        decided: _Decided,
        batch: list[NewEvent],
        found: GroupState,
        keys: dict[tuple[str, str], DataKey],
    ) -> list[NewEvent]:
        """A decided batch that holds, with her learner id in place and the keys it is sealed under: made now (in the
        append transaction) if she has none yet, and kept in ``found`` and ``keys`` for the batches after it."""
        if decided.learner_of and decided.learner is None:
            learner = found.learners.get((tenant, decided.learner_of))  # enrolled by a batch before it
            if learner is None:
                resolved, created = await enroll_learners(conn, tenant, {decided.learner_of}, found={})
                learner = resolved[decided.learner_of]
                if learner not in created:  # written meanwhile outside the log's lock (a roster import)
                    found.versions[tenant].update(await self._stream_versions(conn, tenant, {learner}))
                found.learners[(tenant, decided.learner_of)] = learner
            decided.learner = learner
            batch = [_bind(e, learner) if e.learner_of is not None else e for e in batch]
        if _keyring._ENCRYPT and decided.seal_for:
            wanted = {learner for learner in decided.bound_seal_for if (tenant, learner) not in keys}
            if found.keys is not None:
                keys.update(((tenant, x), found.keys[(tenant, x)]) for x in wanted if (tenant, x) in found.keys)
                wanted = {learner for learner in wanted if (tenant, learner) not in keys}
            if wanted:
                keys.update(((tenant, x), key) for x, key in (await live_keys(conn, tenant, wanted)).items())
        return batch

    async def _sealing_keys(
        self,
        conn: AsyncConnection,
        group: list[_Request],
        batches: list[list[NewEvent]],
        known: dict[tuple[str, str], StoredEvent],
        found: dict[tuple[str, str], DataKey] | None = None,
    ) -> dict[tuple[str, str], DataKey]:
        """The live data key of every learner whose private data the group will store, created if she has
        none: one query per tenant (none when the group's read brought them, ``found``), in the append
        transaction, so no event commits without its key. Events already stored (repeats) are left out: they
        create no key."""
        if not _keyring._ENCRYPT:
            return {}
        learners: dict[str, set[str]] = {}
        for request, batch in zip(group, batches, strict=True):
            # A decided append's keys are made once its decision holds (``_enroll_decided``).
            for e in batch:
                if e.private is not None and e.seal_for and (e.key is None or (request.tenant, e.key) not in known):
                    learners.setdefault(request.tenant, set()).add(e.seal_for)
        keys: dict[tuple[str, str], DataKey] = {}
        for tenant, wanted in learners.items():
            if found is not None:
                have = {learner for learner in wanted if (tenant, learner) in found}
                keys.update(((tenant, learner), found[(tenant, learner)]) for learner in have)
                wanted = wanted - have
                if not wanted:
                    continue
            for learner, key in (await live_keys(conn, tenant, wanted)).items():
                keys[(tenant, learner)] = key
        return keys

    async def _group_state(
        self,
        conn: AsyncConnection,
        wanted: dict[str, tuple[list[str], set[str], list[str]]],
        heads: Mapping[str, Collection[str]] | None = None,
        sealing: Mapping[str, Collection[str]] | None = None,
        *,
        reads: Mapping[str, Mapping[str, tuple[list[str], list[str]]]] | None = None,
    ) -> GroupState:
        """What a group commit must know, under the write lock: per tenant, the events already stored under
        the batches' keys, the learner ids the directory holds for the batches' digests, the current version of
        their streams (and those learners' streams) and the tenant's last hash; the head; and the newest event of
        each stream in ``heads`` (those of decided appends). A backend may also read the live keys of the
        learners in ``sealing`` and of those the digests name (those the group may seal for) in the same round
        trip, and run the log's group reads (``reads``: per tenant, the arguments of each by name); this one leaves
        both."""
        known: dict[tuple[str, str], StoredEvent] = {}
        versions: dict[str, dict[str, int]] = {}
        learners: dict[tuple[str, str], str] = {}
        for tenant, (keys, streams, digests) in wanted.items():
            if keys:
                for key, event in (await self._events_by_keys(conn, tenant, keys)).items():
                    known[(tenant, key)] = event
            found = await find_learners(conn, tenant, digests)
            learners.update(((tenant, d), learner) for d, learner in found.items())
            versions[tenant] = await self._stream_versions(conn, tenant, streams | set(found.values()))
        tenants = sorted(wanted)
        head = (
            await conn.execute(
                sa.select(
                    sa.select(events.c.position).order_by(events.c.position.desc()).limit(1).scalar_subquery(),
                    sa.select(events.c.recorded_us).order_by(events.c.position.desc()).limit(1).scalar_subquery(),
                    *(
                        sa.select(events.c.hash)
                        .where(events.c.tenant == tenant)
                        .order_by(events.c.position.desc())
                        .limit(1)
                        .scalar_subquery()
                        for tenant in tenants
                    ),
                )
            )
        ).one()
        chain = {tenant: last_hash or GENESIS for tenant, last_hash in zip(tenants, head[2:], strict=True)}
        found_heads = {tenant: await self._stream_heads(conn, tenant, names) for tenant, names in (heads or {}).items()}
        return GroupState(known, versions, chain, head[0] or 0, head[1] or 0, heads=found_heads, learners=learners)

    async def _stream_heads(
        self, conn: AsyncConnection, tenant: str, streams: Collection[str]
    ) -> dict[str, StreamHead]:
        """The newest event of each stream (one index probe each), and whether its key is destroyed."""
        found: dict[str, StreamHead] = {}
        for stream in sorted(streams):
            row = (
                await conn.execute(
                    sa.select(events.c.stream_version, events.c.event_type, events.c.recorded_us, events.c.payload,
                              events.c.key_id)
                    .where(events.c.tenant == tenant, events.c.stream == stream)
                    .order_by(events.c.stream_version.desc())
                    .limit(1)
                )
            ).first()  # fmt: skip
            if row is None:
                found[stream] = StreamHead(stream, 0)
            else:
                found[stream] = StreamHead(stream, int(row[0]), row[1], int(row[2]), bytes(row[3]), row[4])
        live = await _keyring.read_keys(conn, tenant, [h.key_id for h in found.values()])
        return {
            s: h if h.key_id is None or h.key_id in live else StreamHead(s, h.version, h.event_type, h.recorded_us,
                                                                         h.payload, h.key_id, True)
            for s, h in found.items()
        }  # fmt: skip

    @abc.abstractmethod
    async def _stream_versions(self, conn: AsyncConnection, tenant: str, streams: set[str]) -> dict[str, int]:
        """The current version of each named stream that exists.

        One index probe per stream (never a scan of a stream's history), whatever its length.
        """

    async def _events_by_keys(self, conn: AsyncConnection, tenant: str, keys: list[str]) -> dict[str, StoredEvent]:
        found: dict[str, StoredEvent] = {}
        for chunk in _chunks(keys, 1000):
            rows = await conn.execute(
                sa.select(*_COLUMNS).where(events.c.tenant == tenant, self._in(events.c.key, chunk))
            )
            for row in rows:
                event = StoredEvent(*row)
                found[event.key or ""] = event
        return found

    # -- reads -----------------------------------------------------------------------------------

    async def read_after(self, position: int, limit: int = 1000, *, tenant: str | None = None) -> list[StoredEvent]:
        query = sa.select(*_COLUMNS).where(events.c.position > position)
        if tenant is not None:
            query = query.where(events.c.tenant == tenant)
        query = query.order_by(events.c.position).limit(limit)
        return await self._fetch_events(query)

    async def scan_after(
        self, position: int, limit: int, event_types: Collection[str] | None = None
    ) -> tuple[list[StoredEvent], int]:
        if event_types is None:
            return await super().scan_after(position, limit)
        try:
            async with self.engine.connect() as conn:
                # The head first: positions commit in order, so every event up to it is visible to the
                # next statement, and events of other types up to it can be passed over for good.
                head = int(await conn.scalar(sa.select(sa.func.max(events.c.position))) or 0)
                if head <= position:
                    return [], position
                rows = (
                    await conn.execute(
                        sa.select(*_COLUMNS)
                        .where(
                            events.c.position > position,
                            events.c.position <= head,
                            self._in(events.c.event_type, sorted(event_types)),
                        )
                        .order_by(events.c.position)
                        .limit(limit)
                    )
                ).all()
        except (DBAPIError, InterfaceError, OSError) as exc:
            raise StoreUnavailableError(f"the log could not be read: {exc}") from exc
        batch = [StoredEvent(*row) for row in rows]
        return batch, (batch[-1].position if len(batch) == limit else head)

    async def read_stream(
        self, tenant: str, stream: str, *, after_version: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        query = (
            sa.select(*_COLUMNS)
            .where(events.c.tenant == tenant, events.c.stream == stream, events.c.stream_version > after_version)
            .order_by(events.c.stream_version)
        )
        if limit is not None:
            query = query.limit(limit)
        return await self._fetch_events(query)

    async def get_by_key(self, tenant: str, key: str) -> StoredEvent | None:
        found = await self._fetch_events(sa.select(*_COLUMNS).where(events.c.tenant == tenant, events.c.key == key))
        return found[0] if found else None

    async def get_by_keys(self, tenant: str, keys: Sequence[str]) -> list[StoredEvent]:
        wanted = list(dict.fromkeys(keys))
        found: list[StoredEvent] = []
        for start in range(0, len(wanted), 1000):  # well under every driver's parameter limit
            chunk = wanted[start : start + 1000]
            found += await self._fetch_events(
                sa.select(*_COLUMNS).where(events.c.tenant == tenant, events.c.key.in_(chunk))
            )
        return sorted(found, key=lambda e: e.position)

    async def _fetch_events(self, query: sa.Select[Any]) -> list[StoredEvent]:
        try:
            async with self.engine.connect() as conn:
                rows = (await conn.execute(query)).all()
        except (DBAPIError, InterfaceError, OSError) as exc:
            raise StoreUnavailableError(f"the log could not be read: {exc}") from exc
        return [StoredEvent(*row) for row in rows]

    async def max_position(self) -> int:
        async with self.engine.connect() as conn:
            value = await conn.scalar(sa.select(sa.func.max(events.c.position)))
        head = int(value or 0)
        self._known_head = max(self._known_head, head)
        return head

    async def head(self) -> tuple[int, int]:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(events.c.position, events.c.recorded_us).order_by(events.c.position.desc()).limit(1)
                )
            ).first()
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    # -- waiting for new events ------------------------------------------------------------------

    def _committed(self, position: int) -> None:
        """Wake local waiters: an event up to ``position`` is committed."""
        if position > self._known_head:
            self._known_head = position
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for_events(self, after: int, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self._prepare_wait()
        while True:
            # Taken before the head is read, so a commit in between still wakes us.
            changed = self._changed
            if self._known_head > after or await self.max_position() > after:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await self._wait_remote(changed, remaining)

    # -- consumers -------------------------------------------------------------------------------

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self._consumer_transaction()

    @asynccontextmanager
    async def _consumer_transaction(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            live = await self._begin_write(conn)
            async with conn.begin():
                yield live

    async def _begin_write(self, conn: AsyncConnection) -> AsyncConnection:
        return conn

    async def get_checkpoint(self, consumer: str, partition: int = 0) -> int:
        async with self.engine.connect() as conn:
            value = await conn.scalar(
                sa.select(checkpoints.c.position).where(
                    checkpoints.c.consumer == consumer, checkpoints.c.partition == partition
                )
            )
        return int(value or 0)

    async def save_checkpoint(
        self, consumer: str, position: int, partition: int | Collection[int] = 0, *, conn: AsyncConnection | None = None
    ) -> None:
        at = now_us()
        partitions = [partition] if isinstance(partition, int) else sorted(partition)
        values = [{"consumer": consumer, "partition": p, "position": position, "updated_us": at} for p in partitions]
        if not values:
            return
        if conn is not None:
            await self._upsert_checkpoint(conn, values)
            return
        async with self.transaction() as own:
            await self._upsert_checkpoint(own, values)

    # -- verification and checkpoints --------------------------------------------------------------

    @abc.abstractmethod
    def snapshot(self) -> AbstractAsyncContextManager[RawReader]:
        """A read-only, consistent view of the database on the driver connection (rows as plain tuples)."""

    async def verify(self, tenant: str | None = None, *, public_key: Ed25519PublicKey | None = None) -> VerifyReport:
        unavailable: tuple[type[BaseException], ...] = (DBAPIError, InterfaceError, OSError, *self._driver_errors)
        try:
            async with self.snapshot() as reader:
                return await self._verify(reader, tenant, public_key)
        except unavailable as exc:
            raise StoreUnavailableError(f"the log could not be read: {exc}") from exc

    async def _verify(self, reader: RawReader, tenant: str | None, public_key: Ed25519PublicKey | None) -> VerifyReport:
        stored = await _read_checkpoints(reader, tenant)
        judged = judge_signatures(stored, public_key)
        # A whole-log walk also sees every position, so a deleted row shows as a hole.
        walk = ChainWalk(contiguous=tenant is None, anchors=[c.anchor() for c in judged.usable])
        query = _SELECT_EVENTS + (" WHERE tenant = $1" if tenant is not None else "") + " ORDER BY position"
        scan = reader.scan(query, (tenant,) if tenant is not None else (), _VERIFY_BATCH)
        async with contextlib.aclosing(scan) as batches:
            async for batch in batches:
                if not walk.feed(batch):
                    break
        walk.finish()
        problems = [judged.forged] if judged.forged is not None else []
        if walk.problem is not None:
            problems.append(walk.problem)
        if walk.broken is not None:
            problems.append(await _diagnose(reader, walk.broken))
        if tenant is not None:
            # A tenant walk skips the other tenants' positions: look for holes in the whole log apart.
            hole = await _first_hole(reader, 0, None)
            if hole is not None:
                problems.append(hole)
        problem = min(problems, key=lambda p: p.position) if problems else None
        return VerifyReport(
            walk.checked, len(walk.heads), problem, walk.heads, walk.anchors_met, judged.verified, judged.unchecked
        )

    async def tenants(self) -> list[str]:
        async with self.snapshot() as reader:
            return [str(row[0]) for row in await reader.fetch(_TENANTS)]

    async def checkpoints(
        self, tenant: str | None = None, *, after: int = 0, through: int | None = None
    ) -> list[Checkpoint]:
        async with self.snapshot() as reader:
            found = await _read_checkpoints(reader, tenant)
        return [c for c in found if c.position > after and (through is None or c.position <= through)]

    async def record_checkpoint(self, tenant: str, signer: Signer, *, position: int | None = None) -> Checkpoint | None:
        async with self.snapshot() as reader:
            target = await _checkpoint_target(reader, tenant, position)
            if target is None:
                return None
            own = [c for c in await _read_checkpoints(reader, tenant) if c.key_id == signer.key_id]
            newest = next((c for c in reversed(own) if c.signature_valid(signer.public_key)), None)
            if newest is not None and newest.position > target:
                # The key signed further than this before: the events it attested must still be there
                # (deleting the newest events leaves no broken link behind, only this).
                await _check_checkpointed_row(reader, newest)
            at_target = [c for c in own if c.position == target]
            if at_target and at_target[0].signature_valid(signer.public_key):
                await _check_checkpointed_row(reader, at_target[0])
                return at_target[0]
            chain_hash = await _verified_hash_at(reader, tenant, target, own, signer)
        checkpoint = signer.sign(tenant, target, chain_hash)
        async with self.transaction() as conn:
            await bulk_insert(
                conn,
                signed_checkpoints,
                [(checkpoint.tenant, checkpoint.position, checkpoint.key_id, checkpoint.chain_hash,
                  checkpoint.signed_us, checkpoint.signature)],
                ignore_conflicts=True,
            )  # fmt: skip
        return checkpoint

    async def close(self) -> None:
        await self.engine.dispose()


async def wait_for_flag(changed: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(changed.wait(), timeout)


class RawReader(abc.ABC):
    """Reads on a driver connection inside one read-only snapshot. SQL uses ``$1``-style parameters."""

    @abc.abstractmethod
    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """Every row of a query."""

    @abc.abstractmethod
    def scan(self, sql: str, args: Sequence[Any], batch: int) -> AsyncGenerator[list[Row], None]:
        """A query's rows in batches; the next batch is fetched while the caller works on this one."""


async def prefetched(fetch: Callable[[], Awaitable[list[Row]]]) -> AsyncGenerator[list[Row], None]:
    """Batches from ``fetch`` until an empty one, always one request ahead of the consumer."""
    pending: asyncio.Future[list[Row]] = asyncio.ensure_future(fetch())
    try:
        while True:
            rows = await pending
            if not rows:
                return
            pending = asyncio.ensure_future(fetch())
            yield rows
    finally:
        if not pending.done():
            # Let the driver finish the request rather than cancel it half-way on a connection still in use.
            with contextlib.suppress(Exception):
                await pending


_SELECT_EVENTS = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events"
#: Rows per batch of a chain walk (two batches are in memory at once).
_VERIFY_BATCH = 8192
# The tenants, one index probe each (a skip scan), not a scan of the whole log.
_TENANTS = """
WITH RECURSIVE t(tenant) AS (
    SELECT min(tenant) FROM events
    UNION ALL
    SELECT (SELECT min(e.tenant) FROM events e WHERE e.tenant > t.tenant) FROM t WHERE t.tenant IS NOT NULL
)
SELECT tenant FROM t WHERE tenant IS NOT NULL
"""


async def _read_checkpoints(reader: RawReader, tenant: str | None) -> list[Checkpoint]:
    query = "SELECT tenant, position, chain_hash, signed_us, key_id, signature FROM signed_checkpoints"
    rows = await reader.fetch(
        query + (" WHERE tenant = $1" if tenant is not None else "") + " ORDER BY position, key_id",
        *((tenant,) if tenant is not None else ()),
    )
    return [Checkpoint(str(t), int(p), bytes(h), int(s), str(k), bytes(sig)) for t, p, h, s, k, sig in rows]


@dataclass(frozen=True, slots=True)
class JudgedCheckpoints:
    usable: list[Checkpoint]  # every checkpoint but forged ones: the chain must show their hashes
    verified: int
    unchecked: int
    forged: ChainProblem | None  # the first checkpoint whose signature fails under the key given


def judge_signatures(found: Sequence[Checkpoint], public_key: Ed25519PublicKey | None) -> JudgedCheckpoints:
    """Sort checkpoints by what their signatures say under ``public_key`` (None: none checked).

    One signed by another key (an earlier key, say) is still held against the chain, but counted
    unchecked; a false one can only make verification fail, never hide a change.
    """
    key_id = key_id_of(public_key) if public_key is not None else None
    usable: list[Checkpoint] = []
    verified = unchecked = 0
    forged: ChainProblem | None = None
    for checkpoint in found:
        if public_key is None or checkpoint.key_id != key_id:
            unchecked += 1
        elif checkpoint.signature_valid(public_key):
            verified += 1
        else:
            if forged is None:
                forged = ChainProblem(
                    checkpoint.tenant,
                    checkpoint.position,
                    "forged",
                    f"{checkpoint.label} does not carry that key's signature",
                )
            continue
        usable.append(checkpoint)
    return JudgedCheckpoints(usable, verified, unchecked, forged)


async def _diagnose(reader: RawReader, broken: BrokenLink) -> ChainProblem:
    """Say why an event does not follow its tenant's previous one: moved, or removed/rewritten before it."""
    found = await reader.fetch(
        "SELECT position FROM events WHERE tenant = $1 AND hash = $2", broken.tenant, broken.prev_hash
    )
    predecessor = int(found[0][0]) if found else None
    if predecessor is not None and predecessor != broken.position:
        return ChainProblem(
            broken.tenant,
            broken.position,
            "reordered",
            f"the event that should precede it stands at position {predecessor}",
        )
    if broken.expected_prev == GENESIS and broken.prev_hash != GENESIS:
        detail = "the tenant's earlier events are missing or were rewritten"
    else:
        detail = "the event before it in the tenant's chain is missing or was rewritten"
    return ChainProblem(broken.tenant, broken.position, "removed", detail)


async def _first_hole(reader: RawReader, after: int, through: int | None) -> ChainProblem | None:
    """The first position in (after, through] (through: the head) that holds no event, if any.

    Positions never skip a number (they are allocated as max + 1 under the write lock, and a rolled-back
    append takes none), so a hole is a deleted event. One count over the primary key; the search for
    where the hole is only runs when there is one.
    """
    bound = through if through is not None else 2**62
    (count, last), *_ = await reader.fetch(
        "SELECT count(*), max(position) FROM events WHERE position > $1 AND position <= $2", after, bound
    )
    end = through if through is not None else int(last or after)
    if int(count) == end - after:
        return None
    first = await reader.fetch("SELECT min(position) FROM events WHERE position > $1", after)
    if first[0][0] is None or int(first[0][0]) > after + 1:
        missing = after + 1
    else:
        found = await reader.fetch(
            "SELECT e.position + 1 FROM events e WHERE e.position > $1 AND e.position < $2"
            " AND NOT EXISTS (SELECT 1 FROM events n WHERE n.position = e.position + 1)"
            " ORDER BY e.position LIMIT 1",
            after,
            end,
        )
        missing = int(found[0][0]) if found else end
    return ChainProblem(
        None,
        missing,
        "removed",
        f"there is no event at position {missing}: it was deleted (positions never skip a number);"
        " the tenant it belonged to cannot be told",
    )


async def _checkpoint_target(reader: RawReader, tenant: str, position: int | None) -> int | None:
    """The position to checkpoint: the tenant's newest event, or ``position`` if it is the tenant's."""
    if position is None:
        rows = await reader.fetch(
            "SELECT position FROM events WHERE tenant = $1 ORDER BY position DESC LIMIT 1", tenant
        )
        return int(rows[0][0]) if rows else None
    rows = await reader.fetch("SELECT tenant FROM events WHERE position = $1", position)
    if not rows or rows[0][0] != tenant:
        raise InvalidBatchError(f"position {position} holds no event of tenant {tenant!r}")
    return position


async def _check_checkpointed_row(reader: RawReader, checkpoint: Checkpoint) -> None:
    """The event a checkpoint names must still hash to the checkpoint's hash (LogTamperedError if not)."""
    rows = await reader.fetch(_SELECT_EVENTS + " WHERE position = $1", checkpoint.position)
    if not rows or rows[0][1] != checkpoint.tenant or row_hash(rows[0], rows[0][12]) != checkpoint.chain_hash:
        raise LogTamperedError(
            ChainProblem(
                checkpoint.tenant, checkpoint.position, "altered", f"the event no longer matches {checkpoint.label}"
            )
        )


async def _verified_hash_at(
    reader: RawReader, tenant: str, target: int, own: list[Checkpoint], signer: Signer
) -> bytes:
    """The tenant's chain hash at ``target``, after checking the chain up to it (LogTamperedError if it does
    not hold): from this key's newest good checkpoint before it, so a periodic checkpoint only walks what
    is new. The checkpointed row itself is re-hashed too, so a row edited since it was signed is caught."""
    base = next((c for c in reversed(own) if c.position < target and c.signature_valid(signer.public_key)), None)
    heads: dict[str, bytes] = {}
    after = 0
    if base is not None:
        await _check_checkpointed_row(reader, base)
        heads, after = {tenant: base.chain_hash}, base.position
    later = [c.anchor() for c in own if after < c.position <= target]
    walk = ChainWalk(heads, after=after, anchors=later)
    query = _SELECT_EVENTS + " WHERE tenant = $1 AND position > $2 AND position <= $3 ORDER BY position"
    async with contextlib.aclosing(reader.scan(query, (tenant, after, target), _VERIFY_BATCH)) as rows_:
        async for batch in rows_:
            if not walk.feed(batch):
                break
    walk.finish()
    if walk.broken is not None:
        raise LogTamperedError(await _diagnose(reader, walk.broken))
    if walk.problem is not None:
        raise LogTamperedError(walk.problem)
    hole = await _first_hole(reader, after, target)
    if hole is not None:
        raise LogTamperedError(hole)
    return walk.heads[tenant]


def _chunks(values: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


__all__ = ["RawReader", "SqlEventLog", "judge_signatures", "prefetched", "run_alembic_env", "run_migrations"]
