"""Helpers for projector tests: statement events straight into the log, and views compared to a pure fold."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

from proficio_events import EventLog, NewEvent, StoredEvent
from proficio_projector import (
    Generation,
    LearnerActivity,
    MemoryState,
    Projection,
    RunnerSettings,
    SqlProjector,
    ViewStore,
    active_generation,
    fold,
)

VERB = "http://adlnet.gov/expapi/verbs/answered"


def statement_event(learner: int, n: int, *, verb: str = VERB, voiding: bool = False) -> NewEvent:
    statement = {
        "id": str(uuid.UUID(int=learner * 1_000_000 + n)),
        "actor": {"mbox": f"mailto:learner{learner}@example.org"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/voided" if voiding else verb},
        "object": {"id": f"http://example.org/item/{n}"},
    }
    return NewEvent.of(
        f"learner:{learner}",
        "StatementVoided" if voiding else "StatementStored",
        {"statement": statement},
        key=f"statement:{statement['id']}",
    )


def scored_statement_event(n: int) -> NewEvent:
    """A statement with a scaled score, tagged with one of three competencies: evidence for competency_evidence."""
    event = statement_event(n % 13, n)
    data = event.decoded
    data["statement"]["result"] = {"score": {"scaled": round((n % 10) / 10, 1)}}
    data["statement"]["context"] = {
        "contextActivities": {
            "other": [{"id": f"https://example.org/c/{n % 3}",
                       "definition": {"type": "http://adlnet.gov/expapi/activities/objective"}}]
        }
    }  # fmt: skip
    return NewEvent.of(event.stream, event.event_type, data, key=event.key)


async def append_statements(
    log: EventLog, count: int, *, learners: int = 10, start: int = 0, tenant: str = "district-7", per_batch: int = 50
) -> None:
    for first in range(start, start + count, per_batch):
        batch = [statement_event(n % learners, n) for n in range(first, min(start + count, first + per_batch))]
        await log.append(tenant, batch)


async def whole_log(log: EventLog) -> list[StoredEvent]:
    found: list[StoredEvent] = []
    position = 0
    while batch := await log.read_after(position, 5000):
        found.extend(batch)
        position = batch[-1].position
    return found


def rows_of(state: MemoryState, table: str) -> list[dict[str, Any]]:
    rows = [row for row in state.rows.get(table, {}).values() if row is not None]
    return sorted(rows, key=lambda r: tuple(str(v) for v in r.values()))


async def view_rows(log: EventLog, projection: Projection, table: str = "learners") -> list[dict[str, Any]]:
    async with log.engine.connect() as conn:
        generation = await active_generation(conn, projection.name)
        assert generation is not None, f"{projection.name} has no active generation"
        rows = await ViewStore(projection, generation).rows(conn, table)
    return sorted(rows, key=lambda r: tuple(str(v) for v in r.values()))


async def replayed_rows(
    log: EventLog, projection: Projection | None = None, table: str = "learners"
) -> list[dict[str, Any]]:
    """The view a pure fold of the whole log gives: what every runtime path must equal."""
    return rows_of(fold(projection or LearnerActivity(), await whole_log(log)), table)


async def caught_up(log: EventLog, name: str = "learner_activity", *, timeout: float = 30.0) -> None:
    """Wait until the active generation of ``name`` has folded the whole log."""
    import asyncio

    from proficio_projector import status

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        head = await log.max_position()
        found = [s for s in await status(log) if s.name == name and s.status == "active"]
        if found and found[0].watermark >= head:
            return
        if loop.time() > deadline:
            raise AssertionError(f"{name} did not catch up with the log at {head}: {found}")
        await asyncio.sleep(0.05)


async def active_code(log: EventLog, code_version: int, name: str = "learner_activity") -> Generation:
    """Wait (up to 10 s) until the active generation of ``name`` runs ``code_version``; that generation."""
    from proficio_projector import list_generations

    live: list[Generation] = []
    for _ in range(200):
        async with log.engine.connect() as conn:
            live = [g for g in await list_generations(conn, name) if g.status == "active"]
        if live and live[0].code_version == code_version:
            return live[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} never ran code version {code_version}: {live}")


#: Runner settings that notice changes in tenths of a second rather than seconds.
FAST: dict[str, Any] = {"idle_timeout": 0.2, "lease_ttl": 2.0, "retry_delay": 0.1}


class Worker(Protocol):
    async def run(self, stop: asyncio.Event) -> None: ...


@asynccontextmanager
async def running(*workers: Worker) -> AsyncIterator[None]:
    """Projectors or relays running in this process until the block ends (then stopped and awaited)."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def sql_projector(log: EventLog, projection: Projection | None = None, owner: str = "worker-a") -> SqlProjector:
    return SqlProjector(log, projection or LearnerActivity(), RunnerSettings(owner=owner, batch_size=300, **FAST))
