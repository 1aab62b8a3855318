"""A keep-up worker process for bench/keepup.py: projectors and/or the equity refresher, on a gated log.

Run as a file (``python bench/_keepup_worker.py ...``), not as part of the ``bench`` package: the benchmark runs
it with this branch's code and with another commit's (PYTHONPATH in front of the editable install), so it
uses only what both have: ``SqlProjector``, ``default_projections``, ``EquityRefresher`` (and
``sql_projectors``, the statement projections' fold group, where the code has it).

The gate: the log shows this process the positions past ``--base`` at ``--rate`` per second from the moment
``--t0`` (up to ``--cap``), as if statements arrived at that rate, while they were appended beforehand by
another process. Scans, waits and the head all see only the visible part.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Collection
from typing import Any

import sqlalchemy as sa

import proficio_projector
from proficio_events import EventLog, StoredEvent, open_event_log
from proficio_events._schema import events
from proficio_events._sql import _COLUMNS
from proficio_projector import RunnerSettings, SqlProjector, default_projections
from proficio_projector.equity import EquityRefresher


class Gate:
    def __init__(self, log: EventLog, base: int, rate: float, cap: int, t0: float) -> None:
        self.log, self.base, self.rate, self.cap, self.t0 = log, base, rate, cap, t0
        self._scan = log.scan_after
        self._read = log.read_after
        self._max = log.max_position

    def visible(self) -> int:
        if self.rate <= 0:
            return self.cap if time.time() >= self.t0 else self.base
        return min(self.cap, self.base + int(max(0.0, time.time() - self.t0) * self.rate))

    def install(self) -> None:
        log: Any = self.log
        log.scan_after = self.scan_after
        log.read_after = self.read_after
        log.max_position = self.max_position
        log.wait_for_events = self.wait_for_events

    async def max_position(self) -> int:
        return min(await self._max(), self.visible())

    async def read_after(self, position: int, limit: int = 1000, *, tenant: str | None = None) -> list[StoredEvent]:
        cap = self.visible()
        return [e for e in await self._read(position, limit, tenant=tenant) if e.position <= cap]

    async def scan_after(
        self, position: int, limit: int, event_types: Collection[str] | None = None
    ) -> tuple[list[StoredEvent], int]:
        """As the SQL log's typed scan, with the head no further than the visible part."""
        if event_types is None:
            batch = await self.read_after(position, limit)
            return batch, (batch[-1].position if batch else position)
        head = min(await self._max(), self.visible())
        if head <= position:
            return [], position
        async with self.log.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(*_COLUMNS)
                    .where(events.c.position > position, events.c.position <= head,
                           events.c.event_type.in_(sorted(event_types)))
                    .order_by(events.c.position)
                    .limit(limit)
                )
            ).all()  # fmt: skip
        batch = [StoredEvent(*row) for row in rows]
        return batch, (batch[-1].position if len(batch) == limit else head)

    async def wait_for_events(self, after: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self.visible() > after and await self._max() > after:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(remaining, 0.01))


async def main(args: argparse.Namespace) -> None:
    if args.nice:
        os.nice(args.nice)
    log = await open_event_log(args.url, migrate=False)
    Gate(log, args.base, args.rate, args.cap, args.t0).install()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    projections = default_projections()
    if args.part.startswith("only:"):
        projections = [p for p in projections if p.name == args.part.split(":", 1)[1]]
    runners: list[Any] = []
    if args.part != "refresher":
        settings = RunnerSettings(owner=f"bench-{args.part}", **({"cached_rows": args.cached_rows} if args.cached_rows
                                                                  is not None else {}))  # fmt: skip
        shared = getattr(proficio_projector, "sql_projectors", None)
        if shared is not None and not args.no_share:
            runners += shared(log, projections, settings)
        else:
            runners += [SqlProjector(log, p, settings) for p in projections]
    if args.part in ("all", "refresher"):
        runners.append(EquityRefresher(log))
    print(f"worker {args.part}: {proficio_projector.__file__}", file=sys.stderr, flush=True)
    try:
        await asyncio.gather(*(r.run(stop) for r in runners))
    finally:
        await log.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--part", default="all", help="all | folds | refresher | only:NAME")
    parser.add_argument("--base", type=int, required=True)
    parser.add_argument("--cap", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0, help="positions made visible per second (0: all at t0)")
    parser.add_argument("--t0", type=float, required=True)
    parser.add_argument("--no-share", action="store_true", help="each projection reads on its own")
    parser.add_argument("--cached-rows", type=int, default=None, help="RunnerSettings.cached_rows (else the code's)")
    parser.add_argument("--nice", type=int, default=0, help="lower this process's CPU priority (os.nice)")
    asyncio.run(main(parser.parse_args()))
