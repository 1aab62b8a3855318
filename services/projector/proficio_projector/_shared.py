"""One read and one decode of the log per process for the projections that fold the same busy event types.

``learner_activity`` and ``competency_evidence`` both fold every statement. Each reading the log on its
own fetched every statement twice from the database and decoded its JSON twice (~4 µs of a statement's
fold each time). A ``SharedScan`` reads the union of its projections' event types once, decodes each
payload once (``StoredEvent.decoded``) and keeps the events in a window of log positions from which each
projection's scans are served, filtered to its own types. Projections stay independent: each keeps its
own generation, leases and checkpoints, and one that falls behind the window (a rebuild from position 0,
a projection much slower than the others) reads the log directly, as before.

Opt-in (``RunnerSettings.shared_read``, ``PROFICIO_SHARED_READ``): measured, it fetches and decodes each
statement once but costs the fold process 2-3 µs *more* per statement than each projection reading on its
own, because the decoded statements now outlive a batch (cache misses, allocator work) where they used to
die one at a time (bench/README.md, session 5). Folding each event into every projection in turn would
keep the saving; this window does not.

The window is one run of positions ``(low, high]`` holding every event of the union's types in it. Events
are dropped once every consumer seen recently has read past them, and the oldest beyond ``keep`` events
whatever the consumers (a stuck one does not hold memory).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import orjson

from proficio_events import EventLog, StoredEvent

from ._apply import cycle_collection_paused
from ._model import Projection

#: The busy event types: projections that fold them share one read of the log in a process.
STATEMENT_TYPES = frozenset({"StatementStored", "StatementVoided"})


def decoded(events: Sequence[StoredEvent]) -> list[StoredEvent]:
    """The events with their payloads decoded once (``StoredEvent.data()`` then returns the shared object)."""
    loads = orjson.loads
    with cycle_collection_paused():  # thousands of containers that live on: see _apply
        for event in events:
            if event.decoded is None:
                # The field exists for this (an event appended in this process carries it); StoredEvent is frozen.
                object.__setattr__(event, "decoded", loads(event.payload))
    return list(events)


@dataclass
class ScanStats:
    """What a shared scan did: for tests and benchmarks."""

    #: Reads of the log made for the window (each one statement), and events they fetched and decoded.
    reads: int = 0
    fetched: int = 0
    #: Scans served from the window, and scans of consumers behind it that read the log on their own.
    served: int = 0
    direct: int = 0


@dataclass
class _Window:
    low: int
    high: int
    events: list[StoredEvent] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)


class SharedScan:
    """``EventLog.scan_after`` for several consumers folding subsets of ``event_types``, read and decoded once."""

    def __init__(
        self, log: EventLog, event_types: Collection[str], *, read_size: int = 5000, keep: int = 30_000
    ) -> None:
        self.log = log
        self.event_types = frozenset(event_types)
        self.read_size = read_size
        self.keep = keep
        self.stats = ScanStats()
        self._window: _Window | None = None
        #: The window's extension in flight: every consumer at its end waits for the same read.
        self._extending: asyncio.Future[None] | None = None
        #: consumer -> (the position it last scanned from, when): what the window must still hold.
        self._consumers: dict[str, tuple[int, float]] = {}
        #: Seconds after which a consumer that has not scanned no longer holds the window's events.
        self.forget_after = 30.0

    def serves(self, event_types: Collection[str] | None) -> bool:
        return event_types is not None and frozenset(event_types) <= self.event_types

    async def scan_after(
        self, position: int, limit: int, event_types: Collection[str], *, consumer: str = ""
    ) -> tuple[list[StoredEvent], int]:
        """As ``EventLog.scan_after`` (events of ``event_types`` after ``position``, at most ``limit``, and the
        position covered), served from the shared window; decoded."""
        wanted = frozenset(event_types)
        if not wanted <= self.event_types:
            raise ValueError(f"a shared scan of {sorted(self.event_types)} cannot serve {sorted(wanted)}")
        self._consumers[consumer] = (position, time.monotonic())
        while True:
            window = self._window
            if window is None or position > window.high:
                # Nothing kept, or every kept event is behind this consumer: the window starts here.
                await self._extend(position, restart=True)
                continue
            if position < window.low:
                # Behind the window: served from a read of its own, which joins the window if it reaches it.
                batch, covered = await self.log.scan_after(position, self.read_size, self.event_types)
                self.stats.reads += 1
                self.stats.fetched += len(batch)
                self.stats.direct += 1
                batch = decoded(batch)
                window = self._window
                if window is not None and position < window.low <= covered and self._extending is None:
                    if covered >= window.high:
                        self._window = _Window(position, covered, batch, [e.position for e in batch])
                    else:
                        older = [e for e in batch if e.position <= window.low]
                        window.events[:0] = older
                        window.positions[:0] = [e.position for e in older]
                        window.low = position
                    self._trim()
                return _served(batch, position, covered, wanted, limit)
            if position == window.high:
                await self._extend(position, restart=False)
                window = self._window
                if window is None or window.high <= position:
                    return [], position  # nothing new in the log
                continue
            self.stats.served += 1
            start = bisect.bisect_right(window.positions, position)
            found: list[StoredEvent] = []
            for event in window.events[start:]:
                if event.event_type in wanted:
                    found.append(event)
                    if len(found) == limit:
                        return found, event.position
            return found, window.high

    async def _extend(self, position: int, *, restart: bool) -> None:
        """Read past ``position`` (the window's end, or a new start) once, whoever else is waiting for it: a
        waiter returns when the read is done (or failed) and looks at the window again."""
        if self._extending is not None:
            await asyncio.wait([self._extending])
            return
        self._extending = asyncio.get_running_loop().create_future()
        try:
            batch, covered = await self.log.scan_after(position, self.read_size, self.event_types)
            self.stats.reads += 1
            self.stats.fetched += len(batch)
            batch = decoded(batch)
            window = self._window
            if restart or window is None:
                if window is None or position > window.high:
                    self._window = _Window(position, covered, batch, [e.position for e in batch])
            elif window.high == position:
                window.events.extend(batch)
                window.positions.extend(e.position for e in batch)
                window.high = covered
            self._trim()
        finally:
            self._extending.set_result(None)
            self._extending = None

    def _trim(self) -> None:
        window = self._window
        if window is None:
            return
        now = time.monotonic()
        live = [p for p, seen in self._consumers.values() if now - seen < self.forget_after]
        self._consumers = {c: v for c, v in self._consumers.items() if now - v[1] < self.forget_after}
        below = min(live) if live else window.high
        drop = bisect.bisect_right(window.positions, below)
        drop = max(drop, len(window.events) - self.keep)
        if drop > 0:
            window.low = max(window.low, window.positions[drop - 1], min(below, window.high))
            del window.events[:drop]
            del window.positions[:drop]
        elif below > window.low:
            window.low = min(below, window.high)


def _served(
    batch: list[StoredEvent], position: int, covered: int, wanted: frozenset[str], limit: int
) -> tuple[list[StoredEvent], int]:
    found: list[StoredEvent] = []
    for event in batch:
        if event.event_type in wanted:
            found.append(event)
            if len(found) == limit:
                return found, event.position
    return found, covered


def shared_scan_for(log: EventLog, projections: Sequence[Projection], **options: int) -> SharedScan | None:
    """One shared scan for the projections that fold statements (None if fewer than two do)."""
    busy = [p for p in projections if p.event_types is not None and p.event_types & STATEMENT_TYPES]
    if len(busy) < 2:
        return None
    union: set[str] = set()
    for projection in busy:
        assert projection.event_types is not None
        union |= projection.event_types
    return SharedScan(log, union, **options)
