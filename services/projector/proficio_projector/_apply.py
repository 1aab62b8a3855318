"""Folding a batch of events into one generation's view, inside the caller's transaction.

Rows the batch needs are loaded once, the events are folded in memory in order, and only the rows
that changed are written, each with the position of the last event that changed it (the per-row
guard). An event the projection cannot fold after ``max_attempts`` is parked as a dead letter in the
same transaction, and the rest of its stream is held behind it (folds are order-sensitive), until the
dead letter is replayed.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from proficio_events import StoredEvent

from ._model import Change, MemoryState, Projection, Put, Remove, RowKey, ViewTable
from ._schema import dead_letters
from ._store import Generation, ViewStore, now_us, open_dead_letter_streams

logger = logging.getLogger("proficio.projector")
MAX_ATTEMPTS = 3
_pauses = 0
_collector_was_enabled = False


@contextlib.contextmanager
def cycle_collection_paused() -> Iterator[None]:
    """Hold off CPython's cycle collector while a batch is folded (nested and concurrent uses allowed).

    A batch keeps thousands of rows (and the statements they came from) alive at once: acyclic
    containers that the collector keeps promoting and traversing again in full collections. In the
    competency_evidence fold that was about a quarter of the projector's CPU (36 -> 27 µs per
    statement, bench/competency_throughput.py). Reference counting frees them when the batch is done,
    and collection resumes then.
    """
    global _pauses, _collector_was_enabled
    if _pauses == 0:
        _collector_was_enabled = gc.isenabled()
        gc.disable()
    _pauses += 1
    try:
        yield
    finally:
        _pauses -= 1
        if _pauses == 0 and _collector_was_enabled:
            gc.enable()


@dataclass
class BatchOutcome:
    applied: int = 0
    skipped: int = 0
    parked: list[int] = field(default_factory=list)


#: A cached row: the row (None: known not to exist) and the position of the last event folded into it.
CachedRow = tuple[dict[str, Any] | None, int]


@dataclass
class Batch:
    """One batch being folded into one generation: the rows it read, as they stand, and what it changes.

    ``Applier.prepare`` makes it (loading the rows), ``Applier.fold`` folds its events one by one (in log order),
    ``Applier.finish`` writes it; the runner may interleave the folds of several projections' batches (one pass
    over the events, each decoded once: ``SegmentFolder``).
    """

    relevant: list[StoredEvent]
    held: dict[tuple[str, str], int]
    state: MemoryState = field(default_factory=MemoryState)
    reads: dict[int, list[tuple[str, RowKey]]] = field(default_factory=dict)
    unreadable: dict[int, str] = field(default_factory=dict)
    #: The position of the last event folded into each row: the per-row guard, applied while folding (an event
    #: a row already holds is skipped, not folded twice into the rows after it).
    row_positions: dict[tuple[str, RowKey], int] = field(default_factory=dict)
    puts: dict[tuple[str, RowKey], tuple[dict[str, Any], int]] = field(default_factory=dict)
    removes: dict[tuple[str, RowKey], int] = field(default_factory=dict)
    parked: list[dict[str, Any]] = field(default_factory=list)
    outcome: BatchOutcome = field(default_factory=BatchOutcome)
    #: With a row cache: each stream's segment, and each row's (the segment of the stream whose events read it).
    segments: dict[tuple[str, str], int] = field(default_factory=dict)
    slot_segments: dict[tuple[str, RowKey], int] = field(default_factory=dict)


class RowCache:
    """Rows of a generation kept between batches, per segment, by the one worker that holds its lease.

    A segment's rows are written only by the worker holding its lease (with its checkpoint, in one transaction);
    while this worker holds it and the checkpoint is the one it committed last, the rows it read and wrote are
    the rows in the database, and a batch need not load them again (``learner_activity``: a row per learner,
    read by each of her statements). The runner drops a segment's rows when that is no longer so (the lease
    lost or the checkpoint moved by another worker), everything after a failed transaction, and the rows of a
    stream held behind a dead letter (a replay rewrites them from another process).
    """

    def __init__(self, max_rows: int = 500_000) -> None:
        self.max_rows = max_rows
        self.segments: dict[int, dict[tuple[str, RowKey], CachedRow]] = {}
        self.size = 0

    def get(self, segment: int, slot: tuple[str, RowKey]) -> CachedRow | None:
        found = self.segments.get(segment)
        return None if found is None else found.get(slot)

    def drop(self, segment: int | None = None) -> None:
        """Forget a segment's rows (None: every segment's)."""
        if segment is None:
            self.segments.clear()
            self.size = 0
        elif (gone := self.segments.pop(segment, None)) is not None:
            self.size -= len(gone)

    def keep(self, batch: Batch) -> None:
        """Keep the rows of a batch just committed (none of a segment where a stream is held)."""
        dropped: set[int] = set()
        if batch.held:
            for event in batch.relevant:
                segment = batch.segments.get((event.tenant, event.stream))
                if (event.tenant, event.stream) in batch.held and segment is not None:
                    dropped.add(segment)
                    self.drop(segment)
        state, positions = batch.state.rows, batch.row_positions
        for slot, segment in batch.slot_segments.items():
            if segment in dropped:
                continue
            rows = self.segments.get(segment)
            if rows is None:
                rows = self.segments[segment] = {}
            if slot not in rows:
                self.size += 1
            rows[slot] = (state[slot[0]].get(slot[1]), positions.get(slot, 0))
        for changed in (batch.puts, batch.removes):
            for slot in changed:
                if slot not in batch.slot_segments:  # written without being read: a kept copy would be stale
                    for kept in self.segments.values():
                        if kept.pop(slot, None) is not None:
                            self.size -= 1
        if self.size > self.max_rows:
            self.drop()


class Applier:
    """Applies batches of events to one generation of one projection."""

    def __init__(self, projection: Projection, generation: Generation, *, max_attempts: int = MAX_ATTEMPTS) -> None:
        self.projection = projection
        self.generation = generation
        self.store = ViewStore(projection, generation)
        self.max_attempts = max_attempts
        self._tables: dict[str, ViewTable] = {t.name: t for t in projection.tables}
        self.types = projection.event_types

    def wants(self, event: StoredEvent) -> bool:
        types = self.projection.event_types
        return types is None or event.event_type in types

    async def apply(
        self, conn: AsyncConnection, events: Sequence[StoredEvent], *, replaying: bool = False
    ) -> BatchOutcome:
        """Fold ``events`` (in log order) into the view, in the open transaction ``conn``.

        With ``replaying`` (dead-letter replay) the events are folded even if their stream is held.
        """
        with cycle_collection_paused():
            batch = await self.prepare(conn, events, replaying=replaying)
            for event in batch.relevant:
                self.fold(batch, event)
            return await self.finish(conn, batch)

    async def prepare(
        self,
        conn: AsyncConnection,
        events: Sequence[StoredEvent],
        *,
        replaying: bool = False,
        cache: RowCache | None = None,
        segment_of: Callable[[StoredEvent], int] | None = None,
        after: Batch | None = None,
    ) -> Batch:
        """The batch of ``events`` this projection folds, with the rows they read loaded (those ``cache`` holds
        are taken from it; ``segment_of`` names an event's segment for it). ``after``: the batch folded just
        before, perhaps still committing: the rows it holds are taken as it leaves them."""
        relevant = [e for e in events if self.wants(e)]
        held = {} if replaying or not relevant else await open_dead_letter_streams(conn, self.generation.consumer)
        batch = Batch(relevant, held)
        batch.outcome.skipped = len(events) - len(relevant)
        if not relevant:
            return batch
        # An event whose rows cannot even be named is as poisonous as one that cannot be folded.
        reads, unreadable = batch.reads, batch.unreadable
        for event in relevant:
            try:
                reads[event.position] = [(r.table, tuple(r.key)) for r in self.projection.reads(event)]
            except Exception as exc:  # a projection bug or a malformed event
                unreadable[event.position] = f"{type(exc).__name__}: {exc} (naming the rows it reads)"
        if cache is not None and segment_of is not None:
            for event in relevant:
                stream = (event.tenant, event.stream)
                if stream not in batch.segments:
                    batch.segments[stream] = segment_of(event)
        state, row_positions = batch.state, batch.row_positions
        needed: dict[str, set[RowKey]] = {}
        slot_segments = batch.slot_segments
        for event in relevant:
            segment = batch.segments.get((event.tenant, event.stream), -1)
            for slot in reads.get(event.position, ()):
                if slot in row_positions:
                    continue
                if after is not None:
                    position = after.row_positions.get(slot)
                    if position is not None:
                        state.set(slot[0], slot[1], after.state.rows.get(slot[0], {}).get(slot[1]))
                        row_positions[slot] = position
                        continue
                cached = None
                if cache is not None:
                    slot_segments[slot] = segment
                    cached = cache.get(segment, slot)
                if cached is not None:
                    state.set(slot[0], slot[1], cached[0])
                    row_positions[slot] = cached[1]
                else:
                    needed.setdefault(slot[0], set()).add(slot[1])
        for table, keys in needed.items():
            found = await self.store.load(conn, table, keys)
            for key in keys:
                row, position = found.get(key, (None, 0))
                state.set(table, key, row)
                row_positions[(table, key)] = position
        return batch

    def fold(self, batch: Batch, event: StoredEvent) -> None:
        """Fold one event of the batch (in log order) into its rows in memory."""
        stream = (event.tenant, event.stream)
        held, row_positions, state = batch.held, batch.row_positions, batch.state
        if stream in held:
            batch.parked.append(self._dead_letter(event, f"held behind the dead letter at position {held[stream]}", 0))
            return
        if event.position in batch.unreadable:
            logger.error("%s parks event %d: %s", self.generation.consumer, event.position,
                         batch.unreadable[event.position])  # fmt: skip
            batch.parked.append(self._dead_letter(event, batch.unreadable[event.position], 1))
            held[stream] = event.position
            return
        for slot in batch.reads[event.position]:
            if row_positions.get(slot, 0) >= event.position:
                batch.outcome.skipped += 1
                return
        changes, error, attempts = self._fold_one(state, event)
        if changes is None:
            logger.error("%s parks event %d after %d attempts: %s", self.generation.consumer, event.position,
                         attempts, error)  # fmt: skip
            batch.parked.append(self._dead_letter(event, error, attempts))
            held[stream] = event.position
            return
        puts, removes = batch.puts, batch.removes
        for change in changes:
            slot = (change.table, tuple(change.key))
            row_positions[slot] = event.position
            if isinstance(change, Remove):
                state.set(change.table, slot[1], None)
                puts.pop(slot, None)
                removes[slot] = event.position
            else:
                # A new dict per change (as MemoryState.apply_changes makes): the state and the write share it.
                written = dict(zip(self._tables[change.table].key_names, slot[1], strict=True))
                written.update(change.values)
                state.set(change.table, slot[1], written)
                removes.pop(slot, None)
                puts[slot] = (written, event.position)
        batch.outcome.applied += 1

    async def finish(self, conn: AsyncConnection, batch: Batch) -> BatchOutcome:
        """Write what the batch changed (and park what it could not fold), in the open transaction ``conn``."""
        if batch.puts or batch.removes:
            await self.store.write(conn, batch.puts, batch.removes)
        if batch.parked:
            await conn.execute(dead_letters.insert(), batch.parked)
            batch.outcome.parked = [int(p["position"]) for p in batch.parked]
        return batch.outcome

    def _fold_one(self, state: MemoryState, event: StoredEvent) -> tuple[Sequence[Change] | None, str, int]:
        error = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                changes = list(self.projection.apply(state, event))
                for change in changes:
                    if change.table not in self._tables:
                        raise ValueError(f"changed a table it does not declare: {change.table!r}")
                    if type(change) is not Put and type(change) is not Remove:  # exact types: the hot path
                        raise TypeError(f"returned {type(change).__name__}, not Put or Remove")
                return changes, "", attempt
            except Exception as exc:  # a projection bug or a malformed event: retried, then parked
                error = f"{type(exc).__name__}: {exc}"
        return None, error, self.max_attempts

    def _dead_letter(self, event: StoredEvent, error: str, attempts: int) -> dict[str, Any]:
        return {
            "consumer": self.generation.consumer,
            "position": event.position,
            "tenant": event.tenant,
            "stream": event.stream,
            "event_type": event.event_type,
            "error": error[:2000],
            "attempts": attempts,
            "parked_us": now_us(),
            "resolved_us": None,
        }
