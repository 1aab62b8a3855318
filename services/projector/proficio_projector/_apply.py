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
from collections.abc import Iterator, Sequence
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


class Applier:
    """Applies batches of events to one generation of one projection."""

    def __init__(self, projection: Projection, generation: Generation, *, max_attempts: int = MAX_ATTEMPTS) -> None:
        self.projection = projection
        self.generation = generation
        self.store = ViewStore(projection, generation)
        self.max_attempts = max_attempts
        self._tables: dict[str, ViewTable] = {t.name: t for t in projection.tables}

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
            return await self._apply(conn, events, replaying)

    async def _apply(self, conn: AsyncConnection, events: Sequence[StoredEvent], replaying: bool) -> BatchOutcome:
        outcome = BatchOutcome()
        relevant = [e for e in events if self.wants(e)]
        outcome.skipped = len(events) - len(relevant)
        if not relevant:
            return outcome
        held = {} if replaying else await open_dead_letter_streams(conn, self.generation.consumer)
        state = MemoryState()
        # An event whose rows cannot even be named is as poisonous as one that cannot be folded.
        reads: dict[int, list[tuple[str, RowKey]]] = {}
        unreadable: dict[int, str] = {}
        for event in relevant:
            try:
                reads[event.position] = [(r.table, tuple(r.key)) for r in self.projection.reads(event)]
            except Exception as exc:  # a projection bug or a malformed event
                unreadable[event.position] = f"{type(exc).__name__}: {exc} (naming the rows it reads)"
        needed: dict[str, set[RowKey]] = {}
        for refs in reads.values():
            for table, key in refs:
                needed.setdefault(table, set()).add(key)
        # The position of the last event folded into each row: the per-row guard, applied while folding
        # (an event a row already holds is skipped, not folded twice into the rows after it).
        row_positions: dict[tuple[str, RowKey], int] = {}
        for table, keys in needed.items():
            found = await self.store.load(conn, table, keys)
            for key in keys:
                row, position = found.get(key, (None, 0))
                state.set(table, key, row)
                row_positions[(table, key)] = position
        puts: dict[tuple[str, RowKey], tuple[dict[str, Any], int]] = {}
        removes: dict[tuple[str, RowKey], int] = {}
        parked: list[dict[str, Any]] = []
        for event in relevant:
            stream = (event.tenant, event.stream)
            if stream in held:
                parked.append(self._dead_letter(event, f"held behind the dead letter at position {held[stream]}", 0))
                continue
            if event.position in unreadable:
                logger.error("%s parks event %d: %s", self.generation.consumer, event.position,
                             unreadable[event.position])  # fmt: skip
                parked.append(self._dead_letter(event, unreadable[event.position], 1))
                held[stream] = event.position
                continue
            if any(row_positions.get(slot, 0) >= event.position for slot in reads[event.position]):
                outcome.skipped += 1
                continue
            changes, error, attempts = self._fold_one(state, event)
            if changes is None:
                logger.error("%s parks event %d after %d attempts: %s", self.generation.consumer, event.position,
                             attempts, error)  # fmt: skip
                parked.append(self._dead_letter(event, error, attempts))
                held[stream] = event.position
                continue
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
            outcome.applied += 1
        await self.store.write(conn, puts, removes)
        if parked:
            await conn.execute(dead_letters.insert(), parked)
            outcome.parked = [int(p["position"]) for p in parked]
        return outcome

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
