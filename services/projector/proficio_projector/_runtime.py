"""Running projections on the SQL log: leases, checkpoints in the view's transaction, rebuilds, status.

``SqlProjector`` serves one projection: it follows the active generation, takes its share of the
generation's segments, and for each batch of the log folds the events of the segments it holds and
moves their checkpoints in one transaction. When the code's version differs from the active
generation's, or on ``rebuild()``, a new generation is built from position 0 beside the active one,
which keeps serving, and swapped in when it has caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError
from sqlalchemy.ext.asyncio import AsyncConnection

from proficio_events import EventLog, EventStoreError, StoredEvent
from proficio_events._schema import checkpoints, events

from ._apply import Applier
from ._leases import LeaseKeeper, worker_id
from ._model import Projection
from ._schema import dead_letters, generations, offsets
from ._shared import SharedScan, shared_scan_for
from ._store import (
    ACTIVE,
    BUILDING,
    RETIRED,
    Generation,
    ViewStore,
    active_generation,
    create_generation,
    ensure_active,
    list_generations,
    now_us,
    segment_of,
)

logger = logging.getLogger("proficio.projector")
RETRYABLE = (DBAPIError, InterfaceError, OSError, EventStoreError)


@dataclass
class RunnerSettings:
    batch_size: int = 5000
    idle_timeout: float = 1.0
    lease_ttl: float = 10.0
    #: Seconds to wait before retrying after the store failed.
    retry_delay: float = 0.5
    #: Seconds to wait after a step that passed over only other projections' events (bounds the
    #: checkpoint writes of a projection whose events are rare while the log is busy; its lag stays small).
    skip_pause: float = 0.05
    #: Whether the statement projections of a process share one read and decode of the log (``SharedScan``).
    #: Off: measured, it cost the fold process 2-3 µs more per statement than each reading on its own (the
    #: decoded statements outlive a batch; bench/README.md, session 5).
    shared_read: bool = False
    owner: str = field(default_factory=worker_id)


async def sql_checkpoints(conn: AsyncConnection, generation: Generation) -> dict[int, int]:
    rows = await conn.execute(
        sa.select(checkpoints.c.partition, checkpoints.c.position).where(checkpoints.c.consumer == generation.consumer)
    )
    found = {int(p): int(pos) for p, pos in rows}
    return {segment: found.get(segment, 0) for segment in range(generation.segments)}


@dataclass(frozen=True)
class Step:
    """What one step of a folder did: log positions it moved past, and events of its types among them."""

    covered: int
    folded: int


class SegmentFolder:
    """Folds the log into one generation, for the segments a lease keeper holds.

    It reads only the projection's event types (``EventLog.scan_after``): most projections want few
    of the log's events, and reading the rest only to skip them was most of their cost. With a ``reader``
    that serves its types, it reads through it (one read and decode shared by the projections of a process).
    """

    def __init__(
        self,
        log: EventLog,
        projection: Projection,
        generation: Generation,
        keeper: LeaseKeeper,
        reader: SharedScan | None = None,
    ) -> None:
        self.log = log
        self.generation = generation
        self.keeper = keeper
        self.event_types = projection.event_types
        self.reader = reader if reader is not None and reader.serves(projection.event_types) else None
        self.applier = Applier(projection, generation)
        # The batch after the last one read, read while that one is folded: (the position it follows, read).
        self._ahead: tuple[int, asyncio.Future[tuple[list[StoredEvent], int]]] | None = None

    def close(self) -> None:
        """Drop a read-ahead in flight."""
        if self._ahead is not None:
            ahead = self._ahead[1]
            ahead.cancel()
            if ahead.done() and not ahead.cancelled():
                ahead.exception()
            self._ahead = None

    def _scan(self, position: int, batch_size: int) -> asyncio.Future[tuple[list[StoredEvent], int]]:
        if self.reader is not None and self.event_types is not None:
            return asyncio.ensure_future(
                self.reader.scan_after(position, batch_size, self.event_types, consumer=self.generation.consumer)
            )
        return asyncio.ensure_future(self.log.scan_after(position, batch_size, self.event_types))

    async def step(self, batch_size: int) -> Step | None:
        """Fold the next batch for the held segments (``covered`` 0: caught up); None: nothing held."""
        owned = sorted(self.keeper.owned)
        if not owned:
            return None
        async with self.log.engine.connect() as conn:
            marks = await sql_checkpoints(conn, self.generation)
        start = min(marks[s] for s in owned)
        if self._ahead is not None and self._ahead[0] == start:
            batch, covered = await self._ahead[1]
            self._ahead = None
        else:
            self.close()
            batch, covered = await self._scan(start, batch_size)
        if covered <= start:
            return Step(0, 0)
        self._ahead = (covered, self._scan(covered, batch_size))
        async with self.log.transaction() as conn:
            current = await sql_checkpoints(conn, self.generation)
            mine: list[StoredEvent] = []
            moved: list[int] = []
            for segment in owned:
                if current[segment] != marks[segment] or not await self.keeper.holds(conn, segment):
                    continue  # another worker took it, or moved it on, since we looked
                moved.append(segment)
            chosen = set(moved)
            for event in batch:
                segment = segment_of(event.tenant, event.stream, self.generation.segments)
                if segment in chosen and event.position > current[segment]:
                    mine.append(event)
            await self.applier.apply(conn, mine)
            for segment in moved:
                await self.log.save_checkpoint(self.generation.consumer, covered, segment, conn=conn)
        return Step(covered - start, len(batch))


class ActiveFollower:
    """Serves the active generation of one projection until stopped, whatever source feeds it.

    A generation built by other code (an older ``version``) is rebuilt first; when a rebuild swaps in a
    new generation, ``_serve`` returns and the new one is served; store failures are retried.
    """

    log: EventLog
    projection: Projection
    settings: RunnerSettings

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                generation = await ensure_active(self.log, self.projection)
                if generation.code_version != self.projection.version:
                    logger.warning(
                        "%s: the active generation was built by version %d, the code is version %d: rebuilding",
                        self.projection.name, generation.code_version, self.projection.version,
                    )  # fmt: skip
                    await build(self.log, self.projection, self.settings, stop=stop)
                    continue
                await self._serve(generation, stop)
            except RETRYABLE as exc:
                logger.warning("%s: the store failed (%s); retrying", self.projection.name, exc)
                await _sleep(stop, self.settings.retry_delay)

    async def _serve(self, generation: Generation, stop: asyncio.Event) -> None:
        raise NotImplementedError


class SqlProjector(ActiveFollower):
    """Keeps one projection's active generation up to date from the SQL log, with other workers."""

    def __init__(
        self,
        log: EventLog,
        projection: Projection,
        settings: RunnerSettings | None = None,
        *,
        reader: SharedScan | None = None,
    ) -> None:
        """``reader``: a scan shared with other projectors of this process (see ``sql_projectors``)."""
        self.log = log
        self.projection = projection
        self.settings = settings or RunnerSettings()
        self.reader = reader

    async def _serve(self, generation: Generation, stop: asyncio.Event) -> None:
        keeper = LeaseKeeper(
            self.log, generation.consumer, generation.segments, self.settings.owner, ttl=self.settings.lease_ttl
        )
        folder = SegmentFolder(self.log, self.projection, generation, keeper, self.reader)
        loop = asyncio.get_running_loop()
        try:
            renew_at = 0.0
            while not stop.is_set():
                if loop.time() >= renew_at:
                    await keeper.refresh()
                    renew_at = loop.time() + self.settings.lease_ttl / 3
                    async with self.log.engine.connect() as conn:
                        active = await active_generation(conn, self.projection.name)
                    if active != generation:
                        return  # swapped by a rebuild: serve the new generation
                try:
                    step = await folder.step(self.settings.batch_size)
                except IntegrityError as exc:  # a dead letter parked twice by racing workers, say
                    logger.warning("%s: %s; retrying", generation.consumer, exc)
                    continue
                if step is None:
                    await _sleep(stop, min(self.settings.idle_timeout, max(0.0, renew_at - loop.time())))
                elif step.covered == 0:
                    async with self.log.engine.connect() as conn:
                        low = min((await sql_checkpoints(conn, generation)).values())
                    await wait_for_events_or_stop(self.log, stop, low, self.settings.idle_timeout)
                elif step.folded == 0 and step.covered < self.settings.batch_size:
                    # Only other projections' events, and few: let them gather rather than commit a
                    # checkpoint for every append while the log is busy.
                    await _sleep(stop, self.settings.skip_pause)
        finally:
            folder.close()
            with contextlib.suppress(*RETRYABLE):
                await keeper.release()


def sql_projectors(
    log: EventLog, projections: Sequence[Projection], settings: RunnerSettings | None = None
) -> list[SqlProjector]:
    """Projectors of ``projections`` for one process; with ``settings.shared_read``, those that fold statements
    share one read of the log and one decode of each statement (``SharedScan``), else each reads its own types.
    """
    settings = settings or RunnerSettings()
    reader = shared_scan_for(log, projections, read_size=settings.batch_size) if settings.shared_read else None
    return [SqlProjector(log, p, settings, reader=reader) for p in projections]


async def build(
    log: EventLog, projection: Projection, settings: RunnerSettings | None = None, *, stop: asyncio.Event | None = None
) -> Generation:
    """Build a new generation of ``projection`` from position 0 of the SQL log and swap it in when caught up.

    The active generation keeps serving (and being updated by its workers) until the swap. A building
    generation left by an interrupted rebuild is resumed from its checkpoints.
    """
    settings = settings or RunnerSettings()
    stop = stop or asyncio.Event()
    async with log.transaction() as conn:
        building = [g for g in await list_generations(conn, projection.name) if g.status == BUILDING]
        if building and building[-1].code_version == projection.version:
            generation = building[-1]
        else:
            for stale in building:
                await _retire(conn, projection, stale)
            generation = await create_generation(conn, projection, status=BUILDING)
    keeper = LeaseKeeper(
        log, generation.consumer, generation.segments, settings.owner, ttl=settings.lease_ttl, fair=False
    )
    folder = SegmentFolder(log, projection, generation, keeper)
    try:
        while True:
            if stop.is_set():
                raise asyncio.CancelledError("stopped before the rebuild caught up")
            if len(await keeper.refresh()) < generation.segments:
                await _sleep(stop, settings.lease_ttl / 3)  # another builder holds some: wait for it to finish
                continue
            step = await folder.step(settings.batch_size * 5)
            if step is not None and step.covered == 0 and await _swap(log, projection, generation, keeper):
                break
    finally:
        folder.close()
        await keeper.release()
    logger.info("%s: generation %d is live", projection.name, generation.generation)
    await _analyze(log, projection, generation)
    return generation


async def _analyze(log: EventLog, projection: Projection, generation: Generation) -> None:
    """Planner statistics for a generation just built (PostgreSQL): its tables were filled far faster than
    autovacuum's rhythm, and until analyzed the planner guesses their sizes (a section grid's per-learner
    query cost ten times its due after a rebuild)."""
    if log.engine.dialect.name != "postgresql":
        return
    store = ViewStore(projection, generation)
    with contextlib.suppress(*RETRYABLE):  # only statistics: autovacuum gets there too
        async with log.engine.begin() as conn:
            for table in store.tables.values():
                await conn.execute(sa.text(f'ANALYZE "{table.name}"'))


async def _swap(log: EventLog, projection: Projection, generation: Generation, keeper: LeaseKeeper) -> bool:
    async with log.transaction() as conn:
        for segment in range(generation.segments):
            if not await keeper.holds(conn, segment):
                return False
        marks = await sql_checkpoints(conn, generation)
        built_through = min(marks.values())
        for old in await list_generations(conn, projection.name):
            if old.status == ACTIVE:
                await _retire(conn, projection, old)
        await conn.execute(
            generations.update()
            .where(generations.c.name == generation.name, generations.c.generation == generation.generation)
            .values(status=ACTIVE, activated_us=now_us(), built_through=built_through)
        )
    return True


async def _retire(conn: AsyncConnection, projection: Projection, generation: Generation) -> None:
    await conn.execute(
        generations.update()
        .where(generations.c.name == generation.name, generations.c.generation == generation.generation)
        .values(status=RETIRED)
    )
    await ViewStore(projection, generation).drop_tables(conn)


@dataclass(frozen=True)
class ProjectorStatus:
    name: str
    generation: int
    code_version: int
    status: str
    #: Every event up to this position is in the view.
    watermark: int
    #: Log events past the watermark.
    lag: int
    dead_letters: int
    sql_checkpoints: dict[int, int]
    kafka_partitions: dict[int, dict[str, int]]


async def status(log: EventLog, *, topic: str | None = None) -> list[ProjectorStatus]:
    """Every live generation (active or building), its watermark, lag and open dead letters.

    ``topic``: the Kafka topic projectors read (its relay checkpoint and only its offsets count).
    """
    head = await log.max_position()
    found: list[ProjectorStatus] = []
    async with log.engine.connect() as conn:
        relay = await _relay_checkpoint(conn, topic)
        for generation in await list_generations(conn):
            if generation.status == RETIRED:
                continue
            marks, partitions, mark = await _watermark(conn, generation, topic, relay)
            open_letters = await conn.scalar(
                sa.select(sa.func.count()).where(
                    dead_letters.c.consumer == generation.consumer, dead_letters.c.resolved_us.is_(None)
                )
            )
            found.append(
                ProjectorStatus(
                    generation.name,
                    generation.generation,
                    generation.code_version,
                    generation.status,
                    mark,
                    max(0, head - mark),
                    int(open_letters or 0),
                    marks,
                    partitions,
                )
            )
    return found


async def active_watermark(log: EventLog, name: str, *, topic: str | None = None) -> tuple[int, int | None] | None:
    """The watermark of the active generation of ``name`` (as ``status()`` gives it) and the recorded time
    (µs) of the event there; None if the view has no active generation.

    For read APIs that say how current a view is on every response: one connection and four small queries,
    not ``status()``'s few per generation of every projection.
    """
    async with log.engine.connect() as conn:
        generation = await active_generation(conn, name)
        if generation is None:
            return None
        mark = (await _watermark(conn, generation, topic, None))[2]
        recorded = None
        if mark > 0:
            value = await conn.scalar(sa.select(events.c.recorded_us).where(events.c.position == mark))
            recorded = int(value) if value is not None else None
    return mark, recorded


async def _relay_checkpoint(conn: AsyncConnection, topic: str | None) -> int:
    if topic is None:
        return 0
    value = await conn.scalar(sa.select(checkpoints.c.position).where(checkpoints.c.consumer == f"relay:{topic}"))
    return int(value or 0)


async def _watermark(
    conn: AsyncConnection, generation: Generation, topic: str | None, relay: int | None
) -> tuple[dict[int, int], dict[int, dict[str, int]], int]:
    """A generation's SQL checkpoints, Kafka partitions, and the position every event up to which it holds.

    ``relay``: the relay's checkpoint on ``topic``, or None to look it up only if the generation reads Kafka.
    """
    marks = await sql_checkpoints(conn, generation)
    query = sa.select(offsets).where(offsets.c.consumer == generation.consumer)
    if topic is not None:
        query = query.where(offsets.c.topic == topic)
    rows = await conn.execute(query)
    partitions = {
        int(r.partition): {
            "next_offset": int(r.next_offset),
            "highwater": int(r.highwater),
            "last_position": int(r.last_position),
        }
        for r in rows
    }
    mark = max(min(marks.values()), generation.built_through)
    if partitions:
        if relay is None:
            relay = await _relay_checkpoint(conn, topic)
        kafka_mark = min(
            max(relay, p["last_position"]) if p["next_offset"] >= p["highwater"] else p["last_position"]
            for p in partitions.values()
        )
        mark = max(mark, kafka_mark)
    return marks, partitions, mark


async def recorded_at(log: EventLog, position: int) -> int | None:
    """The recorded time (µs) of the event at ``position``."""
    if position <= 0:
        return None
    async with log.engine.connect() as conn:
        value = await conn.scalar(sa.select(events.c.recorded_us).where(events.c.position == position))
    return int(value) if value is not None else None


async def replay_dead_letters(
    log: EventLog, projection: Projection, *, position: int | None = None
) -> tuple[list[int], list[int]]:
    """Fold the active generation's open dead letters again, in log order (or only the one at ``position``).

    Returns (resolved positions, still failing positions). A stream's events stay held until every
    dead letter before them is resolved.
    """
    async with log.engine.connect() as conn:
        generation = await active_generation(conn, projection.name)
    if generation is None:
        return [], []
    applier = Applier(projection, generation)
    query = (
        sa.select(dead_letters.c.position)
        .where(dead_letters.c.consumer == generation.consumer, dead_letters.c.resolved_us.is_(None))
        .order_by(dead_letters.c.position)
    )
    if position is not None:
        query = query.where(dead_letters.c.position == position)
    async with log.engine.connect() as conn:
        positions = [int(p) for (p,) in await conn.execute(query)]
    resolved: list[int] = []
    failing: list[int] = []
    failed_streams: set[tuple[str, str]] = set()
    for wanted in positions:
        batch = await log.read_after(wanted - 1, 1)
        if not batch or batch[0].position != wanted:
            continue
        event = batch[0]
        if (event.tenant, event.stream) in failed_streams:
            failing.append(wanted)
            continue
        async with log.transaction() as conn:
            letter = dead_letters.c.consumer == generation.consumer, dead_letters.c.position == wanted
            parked = (await conn.execute(sa.select(dead_letters).where(*letter))).mappings().first()
            if parked is None or parked["resolved_us"] is not None:
                continue  # resolved meanwhile by another replay
            await conn.execute(dead_letters.delete().where(*letter))
            outcome = await applier.apply(conn, [event], replaying=True)  # parks it again if it still fails
            if outcome.parked:
                failing.append(wanted)
                failed_streams.add((event.tenant, event.stream))
            else:
                # Kept, resolved, as the record of what was parked and when it was put right.
                await conn.execute(
                    dead_letters.insert().values(
                        {**{k: v for k, v in parked.items() if k != "id"}, "resolved_us": now_us()}
                    )
                )
                resolved.append(wanted)
    return resolved, failing


async def wait_for_events_or_stop(log: EventLog, stop: asyncio.Event, after: int, timeout: float) -> None:
    """Until an event past ``after`` is committed, ``stop`` is set, or ``timeout`` s."""
    waiter = asyncio.ensure_future(log.wait_for_events(after, timeout))
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    for task in (waiter, stopper):
        task.cancel()


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def projection_named(projections: Sequence[Projection], name: str) -> Projection:
    for projection in projections:
        if projection.name == name:
            return projection
    raise KeyError(f"no projection named {name!r}; known: {', '.join(p.name for p in projections) or 'none'}")
