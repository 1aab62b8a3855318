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
import gc
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError
from sqlalchemy.ext.asyncio import AsyncConnection

from proficio_events import EventLog, EventStoreError, StoredEvent
from proficio_events._schema import checkpoints, events

from ._apply import Applier, Batch, RowCache, cycle_collection_paused
from ._leases import LeaseKeeper, worker_id
from ._model import Projection
from ._schema import dead_letters, generations, offsets
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
    #: The wait doubles after each such step in a row, up to this; any event of its own, or a quiet log, sets it
    #: back. Five reference projections stepping every 50 ms past 20,000 statements/s cost the statement folds a
    #: fifth of their rate (their scans, checks and checkpoints); a reference view then trails by at most this.
    skip_pause_max: float = 1.0
    #: Rows a projector keeps in memory between batches while it holds their segments (``RowCache``); 0: none.
    #: Off by default: measured at 50,000 learners it saves PostgreSQL the rows' load (~2-4 µs per statement) but
    #: costs the folding process more than that (~6 µs: keeping and looking up 50,000 rows; bench/README.md,
    #: session 6).
    cached_rows: int = 0
    #: Fold the next batch while the last one commits (``SegmentFolder``, ``pipelined``): the folding process's
    #: CPU and the database's work on the writes overlap instead of taking turns.
    pipelined: bool = True
    owner: str = field(default_factory=worker_id)


async def sql_checkpoints(conn: AsyncConnection, generation: Generation) -> dict[int, int]:
    rows = await conn.execute(
        sa.select(checkpoints.c.partition, checkpoints.c.position).where(checkpoints.c.consumer == generation.consumer)
    )
    found = {int(p): int(pos) for p, pos in rows}
    return {segment: found.get(segment, 0) for segment in range(generation.segments)}


async def _all_checkpoints(conn: AsyncConnection, generations: Sequence[Generation]) -> list[dict[int, int]]:
    """``sql_checkpoints`` of several generations in one query."""
    if len(generations) == 1:
        return [await sql_checkpoints(conn, generations[0])]
    rows = await conn.execute(
        sa.select(checkpoints.c.consumer, checkpoints.c.partition, checkpoints.c.position).where(
            checkpoints.c.consumer.in_([g.consumer for g in generations])
        )
    )
    found = {(str(c), int(p)): int(pos) for c, p, pos in rows}
    return [{s: found.get((g.consumer, s), 0) for s in range(g.segments)} for g in generations]


@dataclass(frozen=True)
class Step:
    """What one step of a folder did: log positions it moved past, and events of its types among them."""

    covered: int
    folded: int


@dataclass
class _Member:
    """One projection of a folder: its generation, its leases, and what this folder last committed."""

    projection: Projection
    generation: Generation
    keeper: LeaseKeeper
    applier: Applier
    cache: RowCache | None
    #: segment -> the checkpoint this folder committed last (its cached rows are valid while it stands).
    committed: dict[int, int] = field(default_factory=dict)

    def segment(self, event: StoredEvent) -> int:
        return segment_of(event.tenant, event.stream, self.generation.segments)


#: Events folded between turns of the event loop in a pipelined step.
FOLD_TURN = 500


class _Moved(Exception):
    """A pipelined batch found a segment's checkpoint moved or its lease gone when it came to commit: not written."""


@dataclass
class _InFlight:
    """A batch folded and committing in the background (``SegmentFolder`` with ``pipelined``)."""

    commit: asyncio.Future[None]
    covered: int
    #: Per member: the segments the batch moves to ``covered``, and the batch folded (None: none of its events).
    moved: list[list[int]]
    batches: list[Batch | None]
    #: Its rows are in the members' row caches already (it was committed before it was made one).
    kept: bool = False


class SegmentFolder:
    """Folds the log into the generations of one or more projections, for the segments their lease keepers hold.

    It reads only the event types its projections fold (``EventLog.scan_after``): most projections want few
    of the log's events, and reading the rest only to skip them was most of their cost. With several
    projections (a fold group: ``learner_activity`` and ``competency_evidence`` both fold every statement) each
    batch is read once, each event decoded once and folded into every projection that wants it in turn, and the
    view changes of all of them with all their checkpoints are committed in one transaction. Each keeps its own
    generation, leases and checkpoints; one whose checkpoints are behind the others' (a restart, a lease
    taken over) makes the batch start there, and the others skip what they hold already.

    With ``cached_rows`` the rows a projection reads stay in memory between batches while its segments stay
    held and their checkpoints are the ones this folder committed (``RowCache``).

    ``pipelined``: a batch is folded in memory while the one before it commits, and is committed once that one
    has. Its rows are loaded outside its transaction: the rows the batch before it holds are taken from that
    batch (committed or about to be), the others from the database, where nobody else writes the segments'
    rows while the leases are held. When it commits, the transaction checks that every segment's checkpoint
    is where the batch before it left it and that the leases are still held, as the unpipelined fold does; if
    not, nothing of the batch is written and the next step starts again from the checkpoints stored. A batch
    that parked a dead letter is committed before the next is folded (the next must see the stream held).
    """

    def __init__(
        self,
        log: EventLog,
        projection: Projection | Sequence[tuple[Projection, Generation, LeaseKeeper]],
        generation: Generation | None = None,
        keeper: LeaseKeeper | None = None,
        *,
        cached_rows: int = 0,
        pipelined: bool = False,
    ) -> None:
        """``SegmentFolder(log, projection, generation, keeper)`` for one projection, or
        ``SegmentFolder(log, [(projection, generation, keeper), ...])`` for a fold group."""
        if isinstance(projection, Sequence):
            members = list(projection)
        else:
            assert generation is not None
            assert keeper is not None
            members = [(projection, generation, keeper)]
        self.log = log
        self.members = [
            _Member(p, g, k, Applier(p, g), RowCache(cached_rows) if cached_rows > 0 else None) for p, g, k in members
        ]
        types = [p.event_types for p, _, _ in members]
        self.event_types: frozenset[str] | None = (
            None if any(t is None for t in types) else frozenset().union(*(t for t in types if t is not None))
        )
        # The batch after the last one read, read while that one is folded: (the position it follows, read).
        self._ahead: tuple[int, asyncio.Future[tuple[list[StoredEvent], int]]] | None = None
        self.pipelined = pipelined
        self._inflight: _InFlight | None = None

    @property
    def generation(self) -> Generation:
        return self.members[0].generation

    @property
    def keeper(self) -> LeaseKeeper:
        return self.members[0].keeper

    def close(self) -> None:
        """Drop a read-ahead in flight (and a commit: ``flush`` first to keep it)."""
        self._close_ahead()
        if self._inflight is not None:
            commit = self._inflight.commit
            commit.cancel()
            if commit.done() and not commit.cancelled():
                commit.exception()
            self._inflight = None

    async def flush(self) -> bool:
        """Wait for the batch committing in the background, if any: False when it was not written (a segment moved
        or lost meanwhile); a failed commit raises."""
        inflight, self._inflight = self._inflight, None
        if inflight is None:
            return True
        try:
            await inflight.commit
        except _Moved:
            self._drop_cache()
            self.close()  # what was read ahead follows a batch that is not there
            return False
        except BaseException:
            self._drop_cache()  # what was kept may be what the failed transaction wrote
            raise
        for member, segments, done in zip(self.members, inflight.moved, inflight.batches, strict=True):
            for segment in segments:
                member.committed[segment] = inflight.covered
            if member.cache is not None and done is not None and not inflight.kept:
                member.cache.keep(done)
        return True

    def _scan(self, position: int, batch_size: int) -> asyncio.Future[tuple[list[StoredEvent], int]]:
        return asyncio.ensure_future(self.log.scan_after(position, batch_size, self.event_types))

    def _drop_cache(self) -> None:
        for member in self.members:
            member.committed.clear()
            if member.cache is not None:
                member.cache.drop()

    async def step(self, batch_size: int) -> Step | None:
        """Fold the next batch for the held segments (``covered`` 0: caught up); None: nothing held. Pipelined,
        the batch may still be committing when this returns (``flush``)."""
        owned = [sorted(m.keeper.owned) for m in self.members]
        if self.pipelined:
            inflight = self._inflight
            if inflight is not None and inflight.moved == owned and not any(b is not None and b.parked
                                                                           for b in inflight.batches):  # fmt: skip
                return await self._pipelined_step(batch_size, owned, inflight)
            if not await self.flush():
                return Step(0, 0)
        if not any(owned):
            return None
        generations = [m.generation for m in self.members]
        async with self.log.engine.connect() as conn:
            marks = await _all_checkpoints(conn, generations)
        start = min(marks[i][s] for i, segments in enumerate(owned) for s in segments)
        batch, covered = await self._next_batch(start, batch_size)
        if covered <= start:
            return Step(0, 0)
        try:
            moved, batches = await self._fold(batch, covered, owned, marks)
        except BaseException:
            self._drop_cache()  # what was kept may be what the failed transaction wrote
            raise
        for member, segments, done in zip(self.members, moved, batches, strict=True):
            for segment in segments:
                member.committed[segment] = covered
            if member.cache is not None and done is not None:
                member.cache.keep(done)
        if self.pipelined:  # committed already: the next batch is folded while this one's successor commits
            done_now: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done_now.set_result(None)
            self._inflight = _InFlight(done_now, covered, moved, batches, kept=True)
        return Step(covered - start, len(batch))

    async def _pipelined_step(self, batch_size: int, owned: list[list[int]], inflight: _InFlight) -> Step:
        """The next batch after the one committing: folded now, committed once that one has."""
        start = inflight.covered
        batch, covered = await self._next_batch(start, batch_size)
        if covered <= start:
            await self.flush()
            return Step(0, 0)
        batches: list[Batch | None] = []
        with cycle_collection_paused():
            chosen: list[list[StoredEvent]] = [[] for _ in self.members]
            plan: list[tuple[StoredEvent, list[int]]] = []
            takers = [(i, m.projection.event_types, set(owned[i]), m.generation.segments)
                      for i, m in enumerate(self.members) if owned[i]]  # fmt: skip
            for event in batch:  # every event is past ``start``, where all the held segments stand
                found: list[int] = []
                for i, types, held, segments in takers:
                    if (types is None or event.event_type in types) and segment_of(
                        event.tenant, event.stream, segments
                    ) in held:
                        found.append(i)
                        chosen[i].append(event)
                if found:
                    plan.append((event, found))
            async with self.log.engine.connect() as conn:
                for i, member in enumerate(self.members):
                    if not owned[i]:
                        batches.append(None)
                        continue
                    # The rows the batch before holds, as it leaves them (it may not have committed yet).
                    batches.append(await member.applier.prepare(
                        conn, chosen[i], after=inflight.batches[i], cache=member.cache,
                        segment_of=member.segment if member.cache is not None else None,
                    ))  # fmt: skip
            for begin in range(0, len(plan), FOLD_TURN):
                # A turn of the event loop now and then: the batch before commits meanwhile (each of its statements
                # waits for a turn of the loop).
                self._fold_in_one_pass(plan[begin : begin + FOLD_TURN], batches)
                await asyncio.sleep(0)
        if not await self.flush():
            return Step(0, 0)  # the batch before was not written: neither is this one
        expected = [{segment: start for segment in segments} for segments in owned]
        self._inflight = _InFlight(
            asyncio.ensure_future(self._commit(batches, covered, owned, expected)), covered, owned, batches
        )
        return Step(covered - start, len(batch))

    async def _next_batch(self, start: int, batch_size: int) -> tuple[list[StoredEvent], int]:
        """The batch after ``start`` (read ahead, or read now), with the one after it read ahead meanwhile."""
        if self._ahead is not None and self._ahead[0] == start:
            batch, covered = await self._ahead[1]
            self._ahead = None
        else:
            self._close_ahead()
            batch, covered = await self._scan(start, batch_size)
        if covered > start:
            self._ahead = (covered, self._scan(covered, batch_size))
        return batch, covered

    def _close_ahead(self) -> None:
        if self._ahead is not None:
            ahead = self._ahead[1]
            ahead.cancel()
            if ahead.done() and not ahead.cancelled():
                ahead.exception()
            self._ahead = None

    async def _commit(
        self, batches: list[Batch | None], covered: int, owned: list[list[int]], expected: list[dict[int, int]]
    ) -> None:
        """A pipelined batch's transaction: its segments where it expects them and still held, its writes, its
        checkpoints."""
        async with self.log.transaction() as conn:
            current = await _all_checkpoints(conn, [m.generation for m in self.members])
            for i, member in enumerate(self.members):
                if any(current[i][s] != expected[i][s] for s in owned[i]) or not await member.keeper.holds_all(
                    conn, owned[i]
                ):
                    raise _Moved(f"{member.generation.consumer} segments {owned[i]}")
            for member, done in zip(self.members, batches, strict=True):
                if done is not None:
                    await member.applier.finish(conn, done)
            for member, segments in zip(self.members, owned, strict=True):
                await self.log.save_checkpoint(member.generation.consumer, covered, segments, conn=conn)

    async def _fold(
        self, batch: list[StoredEvent], covered: int, owned: list[list[int]], marks: list[dict[int, int]]
    ) -> tuple[list[list[int]], list[Batch | None]]:
        """One transaction: each member's events of the batch folded (in one pass) and its checkpoints moved."""
        moved: list[list[int]] = []
        batches: list[Batch | None] = []
        async with self.log.transaction() as conn:
            current = await _all_checkpoints(conn, [m.generation for m in self.members])
            with cycle_collection_paused():
                takers: list[tuple[int, frozenset[str] | None, set[int], dict[int, int], int]] = []
                for i, member in enumerate(self.members):
                    mine: list[int] = []
                    for segment in owned[i]:
                        if current[i][segment] != marks[i][segment] or not await member.keeper.holds(conn, segment):
                            continue  # another worker took it, or moved it on, since we looked
                        mine.append(segment)
                    cache = member.cache
                    if cache is not None:
                        for segment in range(member.generation.segments):
                            if segment not in mine or member.committed.get(segment) != current[i][segment]:
                                cache.drop(segment)  # not ours, or moved by another worker since we committed
                    moved.append(mine)
                    if mine:
                        types = member.projection.event_types
                        takers.append((i, types, set(mine), current[i], member.generation.segments))
                # One look at each event: which members fold it (their types, segments held, not folded yet).
                chosen: list[list[StoredEvent]] = [[] for _ in self.members]
                plan: list[tuple[StoredEvent, list[int]]] = []
                for event in batch:
                    found: list[int] = []
                    for i, types, held, marks_now, segments in takers:
                        if types is None or event.event_type in types:
                            segment = segment_of(event.tenant, event.stream, segments)
                            if segment in held and event.position > marks_now[segment]:
                                found.append(i)
                                chosen[i].append(event)
                    if found:
                        plan.append((event, found))
                for i, member in enumerate(self.members):
                    batches.append(
                        await member.applier.prepare(conn, chosen[i], cache=member.cache, segment_of=member.segment)
                        if moved[i] else None
                    )  # fmt: skip
                self._fold_in_one_pass(plan, batches)
                for member, done in zip(self.members, batches, strict=True):
                    if done is not None:
                        await member.applier.finish(conn, done)
            for member, mine in zip(self.members, moved, strict=True):
                await self.log.save_checkpoint(member.generation.consumer, covered, mine, conn=conn)
        return moved, batches

    def _fold_in_one_pass(self, plan: list[tuple[StoredEvent, list[int]]], batches: list[Batch | None]) -> None:
        """Each event into every member's batch that takes it, in log order; its payload decoded once for all of
        them and let go once they are done (a statement lives for the length of its folds, not of the batch)."""
        appliers = [m.applier for m in self.members]
        if len(self.members) == 1:
            only = batches[0]
            if only is not None:
                for event, _ in plan:
                    appliers[0].fold(only, event)
            return
        loads = orjson.loads
        for event, found in plan:
            if len(found) == 1 or event.decoded is not None:
                for i in found:
                    appliers[i].fold(batches[i], event)  # type: ignore[arg-type]
                continue
            # StoredEvent is frozen; its ``decoded`` field is the cache ``data()`` reads.
            object.__setattr__(event, "decoded", loads(event.payload))
            for i in found:
                appliers[i].fold(batches[i], event)  # type: ignore[arg-type]
            object.__setattr__(event, "decoded", None)


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


class SqlFoldGroup:
    """Keeps the active generations of several projections up to date from the SQL log, in one pass over it.

    Each batch of the log is read once, each event decoded once and folded into each projection that wants it,
    and all their view changes and checkpoints are committed in one transaction (``SegmentFolder``). A member
    whose active generation was built by other code is rebuilt (``build``) while the others are served, and
    joins them when it is live.
    """

    def __init__(
        self, log: EventLog, projections: Sequence[Projection], settings: RunnerSettings | None = None
    ) -> None:
        self.log = log
        self.projections = list(projections)
        self.settings = settings or RunnerSettings()

    @property
    def name(self) -> str:
        return "+".join(p.name for p in self.projections)

    async def run(self, stop: asyncio.Event) -> None:
        building: dict[str, asyncio.Task[Generation]] = {}
        try:
            while not stop.is_set():
                try:
                    ready: list[tuple[Projection, Generation]] = []
                    for projection in self.projections:
                        task = building.get(projection.name)
                        if task is not None and task.done():
                            del building[projection.name]
                            if not task.cancelled() and (exc := task.exception()) is not None:
                                logger.warning("%s: the rebuild failed (%s); retrying", projection.name, exc)
                        if projection.name in building:
                            continue
                        generation = await ensure_active(self.log, projection)
                        if generation.code_version != projection.version:
                            logger.warning(
                                "%s: the active generation was built by version %d, the code is version %d: "
                                "rebuilding", projection.name, generation.code_version, projection.version,
                            )  # fmt: skip
                            building[projection.name] = asyncio.create_task(
                                build(self.log, projection, self.settings, stop=stop)
                            )
                            continue
                        ready.append((projection, generation))
                    rebuilt = asyncio.Event()
                    for task in building.values():
                        task.add_done_callback(_setter(rebuilt))
                    if ready:
                        await _serve(self.log, self.settings, ready, stop, rebuilt)
                    else:
                        await _sleep_until(stop, rebuilt, self.settings.idle_timeout)
                except RETRYABLE as exc:
                    logger.warning("%s: the store failed (%s); retrying", self.name, exc)
                    await _sleep(stop, self.settings.retry_delay)
        finally:
            for task in building.values():
                task.cancel()
            for task in building.values():
                with contextlib.suppress(BaseException):
                    await task


class SqlProjector(ActiveFollower):
    """Keeps one projection's active generation up to date from the SQL log, with other workers."""

    def __init__(self, log: EventLog, projection: Projection, settings: RunnerSettings | None = None) -> None:
        self.log = log
        self.projection = projection
        self.settings = settings or RunnerSettings()

    async def _serve(self, generation: Generation, stop: asyncio.Event) -> None:
        await _serve(self.log, self.settings, [(self.projection, generation)], stop, None)


_heap_frozen = False


def freeze_heap() -> None:
    """Once per process: collect, then move every object alive now out of the cycle collector's sight
    (``gc.freeze``).

    A folding process lives long; what it holds when it starts (modules, SQLAlchemy's metadata and caches,
    the app) stays to the end, and every full collection traversed all of it again (each batch promotes
    thousands of young objects, which brings full collections on): ~10% of the statement folds' CPU
    (bench/README.md, session 6).
    """
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        gc.collect()
        gc.freeze()


#: While a process folds, its cycle collector runs every this many seconds, and not otherwise (``_serve``).
COLLECT_EVERY_S = 30.0


async def _serve(
    log: EventLog,
    settings: RunnerSettings,
    members: Sequence[tuple[Projection, Generation]],
    stop: asyncio.Event,
    regroup: asyncio.Event | None,
) -> None:
    """Fold the log into these active generations until stopped, one of them is swapped by a rebuild, or
    ``regroup`` is set (then the caller serves them anew).

    The cycle collector is paused meanwhile and run every ``COLLECT_EVERY_S``: paused only while each batch folds,
    it ran as soon as the batch ended, while that batch (and, pipelined, the next) was still alive, traversing and
    promoting each batch's objects again and again.
    """
    freeze_heap()
    with cycle_collection_paused():
        keepers = [LeaseKeeper(log, g.consumer, g.segments, settings.owner, ttl=settings.lease_ttl) for _, g in members]
        folder = SegmentFolder(
            log, [(p, g, k) for (p, g), k in zip(members, keepers, strict=True)], cached_rows=settings.cached_rows,
            pipelined=settings.pipelined,
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        try:
            renew_at = 0.0
            collect_at = loop.time() + COLLECT_EVERY_S
            skip_pause = settings.skip_pause
            while not stop.is_set() and not (regroup is not None and regroup.is_set()):
                if loop.time() >= collect_at:
                    gc.collect()
                    collect_at = loop.time() + COLLECT_EVERY_S
                if loop.time() >= renew_at:
                    for keeper in keepers:
                        await keeper.refresh()
                    renew_at = loop.time() + settings.lease_ttl / 3
                    async with log.engine.connect() as conn:
                        for projection, generation in members:
                            if await active_generation(conn, projection.name) != generation:
                                return  # swapped by a rebuild: serve the new generation
                try:
                    step = await folder.step(settings.batch_size)
                except IntegrityError as exc:  # a dead letter parked twice by racing workers, say
                    logger.warning("%s: %s; retrying", "+".join(g.consumer for _, g in members), exc)
                    continue
                if step is None:
                    await _sleep(stop, min(settings.idle_timeout, max(0.0, renew_at - loop.time())))
                elif step.covered == 0:
                    async with log.engine.connect() as conn:
                        low = min(min(m.values()) for m in await _all_checkpoints(conn, [g for _, g in members]))
                    waited = loop.time()
                    await wait_for_events_or_stop(log, stop, low, settings.idle_timeout)
                    if loop.time() - waited >= min(settings.idle_timeout, settings.skip_pause_max):
                        skip_pause = settings.skip_pause  # the log was quiet a while: it is not busy any more
                elif step.folded == 0 and step.covered < settings.batch_size:
                    # Only other projections' events, and few: let them gather rather than commit a
                    # checkpoint for every append while the log is busy; the longer so, the longer the wait.
                    await _sleep(stop, skip_pause)
                    skip_pause = min(settings.skip_pause_max, skip_pause * 2)
                elif step.folded:
                    skip_pause = settings.skip_pause
        finally:
            with contextlib.suppress(*RETRYABLE, IntegrityError):
                await folder.flush()  # the last batch's commit, before the leases go
            folder.close()
            for keeper in keepers:
                with contextlib.suppress(*RETRYABLE):
                    await keeper.release()


#: The busy event types: projections that fold them in one process are served as one fold group.
STATEMENT_TYPES = frozenset({"StatementStored", "StatementVoided"})


def sql_projectors(
    log: EventLog, projections: Sequence[Projection], settings: RunnerSettings | None = None
) -> list[SqlProjector | SqlFoldGroup]:
    """Runners of ``projections`` for one process: the projections that fold statements as one fold group
    (``SqlFoldGroup``: one read, one decode and one transaction for all of them), each other one on its own."""
    settings = settings or RunnerSettings()
    busy = [p for p in projections if p.event_types is not None and p.event_types & STATEMENT_TYPES]
    runners: list[SqlProjector | SqlFoldGroup] = []
    if len(busy) > 1:
        runners.append(SqlFoldGroup(log, busy, settings))
    else:
        busy = []
    runners += [SqlProjector(log, p, settings) for p in projections if p not in busy]
    return runners


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
    folder = SegmentFolder(log, projection, generation, keeper, cached_rows=settings.cached_rows)
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


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    """A done-callback that sets ``event``."""
    return lambda _: event.set()


async def _sleep_until(stop: asyncio.Event, other: asyncio.Event, seconds: float) -> None:
    """Until ``stop`` or ``other`` is set, or ``seconds``."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(other.wait())]
    await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    for task in waiters:
        task.cancel()


def projection_named(projections: Sequence[Projection], name: str) -> Projection:
    for projection in projections:
        if projection.name == name:
            return projection
    raise KeyError(f"no projection named {name!r}; known: {', '.join(p.name for p in projections) or 'none'}")
