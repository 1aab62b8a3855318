"""The projector runtime on the SQL log, on SQLite and PostgreSQL: checkpoints with the view, the per-row
guard, dead letters, leases shared by workers, and rebuilds swapped in while the old generation serves."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
import sqlalchemy as sa

from proficio_events import EventLog, NewEvent, StoredEvent
from proficio_projector import (
    Applier,
    Change,
    LearnerActivity,
    Put,
    RowRef,
    RunnerSettings,
    SqlProjector,
    State,
    ViewTable,
    build,
    ensure_active,
    list_generations,
    replay_dead_letters,
    status,
)
from proficio_projector._schema import dead_letters, leases

from .support import FAST, active_code, append_statements, caught_up, replayed_rows, running, statement_event, view_rows
from .support import sql_projector as projector


async def test_follows_the_log_and_equals_a_replay(log: EventLog) -> None:
    await append_statements(log, 700, learners=23)
    async with running(projector(log)):
        await caught_up(log)
        assert await view_rows(log, LearnerActivity()) == await replayed_rows(log)
        await append_statements(log, 300, learners=31, start=700)  # arrives while it runs
        await caught_up(log)
    rows = await view_rows(log, LearnerActivity())
    assert rows == await replayed_rows(log)
    assert sum(r["statements"] for r in rows) == 1000


async def test_view_and_checkpoint_commit_together_or_not_at_all(log: EventLog) -> None:
    await append_statements(log, 40)
    generation = await ensure_active(log, LearnerActivity())
    applier = Applier(LearnerActivity(), generation)
    events = await log.read_after(0, 100)

    class Crash(Exception):
        pass

    try:
        async with log.transaction() as conn:
            await applier.apply(conn, events)
            await log.save_checkpoint(generation.consumer, events[-1].position, 0, conn=conn)
            raise Crash
    except Crash:
        pass

    assert await view_rows(log, LearnerActivity()) == []
    assert await log.get_checkpoint(generation.consumer, 0) == 0


async def test_a_replayed_event_changes_nothing(log: EventLog) -> None:
    await append_statements(log, 200, learners=7)
    async with running(projector(log)):
        await caught_up(log)
    before = await view_rows(log, LearnerActivity())
    generation = await ensure_active(log, LearnerActivity())
    # As if the checkpoints were lost: every event is delivered again, in batches that straddle rows.
    for segment in range(generation.segments):
        await log.save_checkpoint(generation.consumer, 0, segment)
    events = await log.read_after(0, 1000)
    applier = Applier(LearnerActivity(), generation)
    for start in range(0, len(events), 37):
        async with log.transaction() as conn:
            outcome = await applier.apply(conn, events[start : start + 37])
            assert outcome.applied == 0
    assert await view_rows(log, LearnerActivity()) == before == await replayed_rows(log)


async def test_workers_starting_together_make_one_active_generation(
    log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers that start at once each find no active generation: one creates it, the others serve it (without
    a lock, one that read "none" before the first committed made generation 2 beside it, and both stayed active)."""
    import asyncio

    from proficio_projector import _store, status

    read = _store.active_generation
    calls = 0

    async def slow_after_the_first(conn: Any, name: str) -> Any:
        nonlocal calls
        calls += 1
        found = await read(conn, name)
        if calls > 1:
            await asyncio.sleep(1.0)  # the first worker commits its generation meanwhile
        return found

    monkeypatch.setattr(_store, "active_generation", slow_after_the_first)
    found = await asyncio.gather(*(ensure_active(log, LearnerActivity()) for _ in range(3)))
    monkeypatch.undo()
    assert {g.generation for g in found} == {1}
    assert [s.generation for s in await status(log) if s.name == "learner_activity" and s.status == "active"] == [1]


async def test_workers_share_the_segments_and_the_view_is_the_same(log: EventLog) -> None:
    await append_statements(log, 600, learners=40)
    first, second = projector(log, owner="worker-a"), projector(log, owner="worker-b")
    async with running(first, second):
        await caught_up(log)
        owners: list[str] = []
        for _ in range(100):  # lease rounds: each worker settles on its fair share, two segments
            async with log.engine.connect() as conn:
                owners = sorted(
                    row.owner
                    for row in await conn.execute(sa.select(leases).where(leases.c.expires_us > 0))
                    if row.name.startswith("projector:learner_activity")
                )
            if owners == ["worker-a", "worker-a", "worker-b", "worker-b"]:
                break
            await asyncio.sleep(0.1)
        await append_statements(log, 200, learners=40, start=600)
        await caught_up(log)
    assert owners == ["worker-a", "worker-a", "worker-b", "worker-b"]
    assert await view_rows(log, LearnerActivity()) == await replayed_rows(log)


async def test_rebuild_swaps_in_a_new_generation_while_the_old_one_serves(log: EventLog) -> None:
    await append_statements(log, 300, learners=9)
    async with running(projector(log)):
        await caught_up(log)
        before = await view_rows(log, LearnerActivity())
        rebuilding = asyncio.create_task(build(log, LearnerActivity(), RunnerSettings(owner="rebuilder", **FAST)))
        await append_statements(log, 100, learners=9, start=300)
        generation = await rebuilding
        assert generation.generation == 2
        await caught_up(log)
        after = await view_rows(log, LearnerActivity())
    assert before != after
    assert after == await replayed_rows(log)
    async with log.engine.connect() as conn:
        statuses = {g.generation: g.status for g in await list_generations(conn, "learner_activity")}
        tables = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
    assert statuses == {1: "retired", 2: "active"}
    assert not [t for t in tables if t.startswith("view_learner_activity_g1_")]
    assert "view_learner_activity_g2_learners" in tables


async def test_a_rebuilt_generation_is_analyzed_before_it_serves(log: EventLog) -> None:
    """On PostgreSQL a rebuild fills its tables faster than autovacuum looks: it gathers their statistics."""
    await append_statements(log, 200, learners=7)
    generation = await build(log, LearnerActivity(), RunnerSettings(owner="rebuilder", **FAST))
    table = f"view_learner_activity_g{generation.generation}_learners"
    async with log.engine.connect() as conn:
        if log.engine.dialect.name != "postgresql":
            assert table in await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
            return
        analyzed = await conn.scalar(
            sa.text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = :t"), {"t": table}
        )
        rows = await conn.scalar(sa.text("SELECT reltuples FROM pg_class WHERE relname = :t"), {"t": table})
    assert analyzed is not None
    assert rows == 7  # the planner knows the table's size


class VersionTwo(LearnerActivity):
    """The next code version of the view."""

    version = LearnerActivity.version + 1


async def test_new_code_version_is_rebuilt_on_start(log: EventLog) -> None:
    await append_statements(log, 120)
    async with running(projector(log)):
        await caught_up(log)
    async with running(projector(log, VersionTwo())):
        live = await active_code(log, VersionTwo.version)
        await caught_up(log)
    assert live.generation == 2
    assert await view_rows(log, VersionTwo()) == await replayed_rows(log)


class Picky(LearnerActivity):
    """Cannot fold statements whose verb is .../poison, until ``fixed``."""

    name = "picky"
    fixed = False
    calls = 0

    def reads(self, event: StoredEvent) -> Iterable:  # type: ignore[type-arg]
        return super().reads(event)

    def apply(self, state: State, event: StoredEvent) -> Sequence[Change]:
        if event.data()["statement"]["verb"]["id"].endswith("/poison") and not type(self).fixed:
            type(self).calls += 1
            raise ValueError("no rule for this verb")
        return super().apply(state, event)


async def test_a_poison_event_is_parked_after_retries_and_holds_its_stream_until_replayed(log: EventLog) -> None:
    Picky.fixed = False
    Picky.calls = 0
    await log.append("district-7", [statement_event(1, 0), statement_event(2, 1)])
    poison = await log.append("district-7", [statement_event(1, 2, verb="http://example.org/poison")])
    after = await log.append("district-7", [statement_event(1, 3), statement_event(2, 4)])
    poisoned, held = poison.events[0].position, after.events[0].position
    async with running(projector(log, Picky())):
        await caught_up(log, "picky")
        found = await status(log)
    assert Picky.calls == 3  # tried three times, then parked
    assert [s.dead_letters for s in found if s.name == "picky"] == [2]
    async with log.engine.connect() as conn:
        parked = {r.position: r for r in await conn.execute(sa.select(dead_letters))}
    assert sorted(parked) == [poisoned, held]
    assert parked[poisoned].attempts == 3
    assert "no rule for this verb" in parked[poisoned].error
    assert f"held behind the dead letter at position {poisoned}" in parked[held].error
    rows = {r["learner"]: r["statements"] for r in await view_rows(log, Picky())}
    assert rows == {"learner:1": 1, "learner:2": 2}  # learner 2 went on; learner 1 stopped at the poison

    assert await replay_dead_letters(log, Picky()) == ([], [poisoned, held])  # still failing: stays parked

    Picky.fixed = True
    assert await replay_dead_letters(log, Picky()) == ([poisoned, held], [])
    assert await view_rows(log, Picky()) == await replayed_rows(log, Picky())
    found = await status(log)
    assert [s.dead_letters for s in found if s.name == "picky"] == [0]


class BlindReads(LearnerActivity):
    """Cannot even name the rows of a statement whose verb is .../poison."""

    name = "blind_reads"

    def reads(self, event: StoredEvent) -> Iterable:  # type: ignore[type-arg]
        if event.data()["statement"]["verb"]["id"].endswith("/poison"):
            raise KeyError("no rows for this verb")
        return super().reads(event)


async def test_an_event_whose_rows_cannot_be_named_is_parked_too(log: EventLog) -> None:
    await log.append("district-7", [statement_event(1, 0), statement_event(2, 1)])
    poison = await log.append("district-7", [statement_event(1, 2, verb="http://example.org/poison")])
    await log.append("district-7", [statement_event(2, 3)])
    async with running(projector(log, BlindReads())):
        await caught_up(log, "blind_reads")
    async with log.engine.connect() as conn:
        parked = [(r.position, r.error) for r in await conn.execute(sa.select(dead_letters))]
    assert [position for position, _ in parked] == [poison.events[0].position]
    assert "naming the rows it reads" in parked[0][1]
    rows = {r["learner"]: r["statements"] for r in await view_rows(log, BlindReads())}
    assert rows == {"learner:1": 1, "learner:2": 2}


async def test_a_folding_process_runs_its_cycle_collector_on_a_clock(
    log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While projectors fold, the collector does not run after every batch (it traversed each batch's objects while
    they were alive); it runs every ``COLLECT_EVERY_S``, and as before once they stop."""
    import gc

    from proficio_projector import _runtime

    monkeypatch.setattr(_runtime, "COLLECT_EVERY_S", 0.2)
    full: list[float] = []

    def counted(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(asyncio.get_running_loop().time())

    await append_statements(log, 200)
    gc.callbacks.append(counted)
    try:
        async with running(projector(log)):
            await caught_up(log, "learner_activity")
            assert not gc.isenabled()
            await asyncio.sleep(1.0)
        assert gc.isenabled()
    finally:
        gc.callbacks.remove(counted)
    assert len(full) >= 3
    assert await view_rows(log, LearnerActivity()) == await replayed_rows(log, LearnerActivity())


class RareCount:
    """Counts a tenant's ``Rare`` events: a projection whose events are rare in a busy log (as the reference views)."""

    name = "rare_count"
    version = 1
    event_types: frozenset[str] | None = frozenset({"Rare"})
    partitioned = False
    tables: Sequence[ViewTable] = (
        ViewTable("counts", key=(sa.Column("tenant", sa.Text),), values=(sa.Column("n", sa.Integer, nullable=False),)),
    )

    def reads(self, event: StoredEvent) -> Iterable[RowRef]:
        return (RowRef("counts", (event.tenant,)),)

    def apply(self, state: State, event: StoredEvent) -> Sequence[Change]:
        row = state.get("counts", (event.tenant,))
        return (Put("counts", (event.tenant,), {"n": (row["n"] if row else 0) + 1}),)


async def test_a_projection_whose_events_are_rare_steps_less_often_while_the_log_is_busy(log: EventLog) -> None:
    """Past a stream of other events, the wait after each step that folded nothing doubles up to ``skip_pause_max``
    (each step reads the log, checks leases and moves a checkpoint); its own events are still folded within that
    wait, and once the log is quiet a new one is folded at once."""
    scans: list[float] = []
    scan = log.scan_after

    async def counted(position: int, limit: int, event_types: Any = None) -> Any:
        if event_types is not None and set(event_types) == {"Rare"}:
            scans.append(asyncio.get_running_loop().time())
        return await scan(position, limit, event_types)

    log.scan_after = counted  # type: ignore[method-assign]
    settings = RunnerSettings(owner="rare", skip_pause=0.02, skip_pause_max=0.32, **FAST)
    busy = asyncio.Event()

    async def others() -> None:  # another projection's events, every 10 ms
        n = 0
        while not busy.is_set():
            await log.append("district-7", [statement_event(n % 5, n)])
            n += 1
            await asyncio.sleep(0.01)

    async def rare_folded(count: int, within: float) -> float:
        started = asyncio.get_running_loop().time()
        await log.append("district-7", [NewEvent.of("rare", "Rare", {})])
        while asyncio.get_running_loop().time() - started < within:
            try:
                rows = await view_rows(log, RareCount(), "counts")
            except AssertionError:  # not served yet
                rows = []
            if rows and rows[0]["n"] == count:
                return asyncio.get_running_loop().time() - started
            await asyncio.sleep(0.01)
        raise AssertionError(f"the Rare event was not folded within {within} s")

    async with running(SqlProjector(log, RareCount(), settings)):
        await rare_folded(1, 5.0)  # serving
        writer = asyncio.create_task(others())
        await asyncio.sleep(0.5)
        scans.clear()
        await asyncio.sleep(2.0)
        stepped = len(scans)
        waited = await rare_folded(2, 3.0)
        busy.set()
        await writer
        await asyncio.sleep(0.5)  # quiet: the next step finds nothing and waits for the log
        quiet = await rare_folded(3, 3.0)
    # Every 20 ms plus the step's own work would be ~50 steps in 2 s; doubling to 0.32 s, a handful.
    assert 2 <= stepped <= 12, stepped
    assert waited < 0.32 + 0.5
    assert quiet < 0.3
