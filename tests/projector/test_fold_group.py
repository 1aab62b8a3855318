"""The statement projections folded in one pass (``SqlFoldGroup``, ``SegmentFolder`` with several projections) and
the rows a projector keeps between batches (``RowCache``), on SQLite and PostgreSQL: the views equal a replay, each
statement is read once for all of them, their views and checkpoints commit together or not at all, and kept rows
never outlive another worker's writes or a dead letter's replay; view rows written as JSON or as arrays give the
same rows."""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
from collections.abc import Collection
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from proficio_events import EventLog, NewEvent, StoredEvent
from proficio_projector import (
    Generation,
    LearnerActivity,
    RunnerSettings,
    SqlFoldGroup,
    SqlProjector,
    ViewStore,
    ViewTable,
    ensure_active,
    replay_dead_letters,
    sql_projectors,
)
from proficio_projector._leases import LeaseKeeper
from proficio_projector._runtime import SegmentFolder, Step, sql_checkpoints
from proficio_projector._schema import leases
from proficio_projector.competency import CompetencyEvidence
from proficio_projector.roster import Roster

from .support import (
    FAST,
    active_code,
    caught_up,
    replayed_rows,
    running,
    scored_statement_event,
    statement_event,
    view_rows,
)
from .test_runtime import Picky


async def _mixed_log(log: EventLog, count: int) -> None:
    """Scored statements (some voided), and other event types between them that the group must pass over."""
    rng = random.Random(5)
    batch: list[NewEvent] = []
    for n in range(count):
        if rng.random() < 0.2:
            batch.append(NewEvent.of("reference", "SomethingElse", {"n": n}))
        elif rng.random() < 0.05:
            batch.append(statement_event(n % 9, n, voiding=True))
        else:
            batch.append(scored_statement_event(n))
        if len(batch) == 37:
            await log.append("district-7", batch)
            batch = []
    if batch:
        await log.append("district-7", batch)


def _count_reads(log: EventLog) -> list[int]:
    """Patch ``log.scan_after`` to record how many events each call fetched."""
    fetched: list[int] = []
    scan = log.scan_after

    async def counted(position: int, limit: int, event_types: Collection[str] | None = None) -> Any:
        batch, covered = await scan(position, limit, event_types)
        fetched.append(len(batch))
        return batch, covered

    log.scan_after = counted  # type: ignore[method-assign]
    return fetched


async def test_statement_projections_fold_in_one_pass_and_equal_a_replay(log: EventLog) -> None:
    await _mixed_log(log, 900)
    statements = len([e for e in await _all(log) if e.event_type.startswith("Statement")])
    activity, evidence, roster = LearnerActivity(), CompetencyEvidence(), Roster()
    runners = sql_projectors(log, [activity, roster, evidence], RunnerSettings(owner="w", batch_size=200, **FAST))
    group = [r for r in runners if isinstance(r, SqlFoldGroup)]
    assert len(group) == 1
    assert [p.name for p in group[0].projections] == [activity.name, evidence.name]
    assert [r.projection.name for r in runners if isinstance(r, SqlProjector)] == [roster.name]
    fetched = _count_reads(log)
    async with running(*group):
        await caught_up(log, activity.name)
        await caught_up(log, evidence.name)
    assert await view_rows(log, activity) == await replayed_rows(log, activity)
    for table in ("observations", "voids"):
        assert await view_rows(log, evidence, table) == await replayed_rows(log, evidence, table)
    # Each statement read once for both projections (each reading on its own: twice).
    assert statements <= sum(fetched) < 1.2 * statements
    # What the process held when the folds started is out of the cycle collector's sight (freeze_heap).
    assert gc.get_freeze_count() > 0


async def _all(log: EventLog) -> list[StoredEvent]:
    from .support import whole_log

    return await whole_log(log)


async def _folder(
    log: EventLog, projections: list[Any], owner: str = "a", cached_rows: int = 0, pipelined: bool = False
) -> tuple[SegmentFolder, list[LeaseKeeper]]:
    members = []
    keepers = []
    for projection in projections:
        generation = await ensure_active(log, projection)
        keeper = LeaseKeeper(log, generation.consumer, generation.segments, owner, ttl=30, fair=False)
        await keeper.refresh()
        keepers.append(keeper)
        members.append((projection, generation, keeper))
    return SegmentFolder(log, members, cached_rows=cached_rows, pipelined=pipelined), keepers


async def _marks(log: EventLog, generation: Generation) -> dict[int, int]:
    async with log.engine.connect() as conn:
        return await sql_checkpoints(conn, generation)


async def test_a_group_commits_every_view_and_checkpoint_together_or_nothing(log: EventLog) -> None:
    for first in range(0, 120, 40):
        await log.append("district-7", [scored_statement_event(n) for n in range(first, first + 40)])
    activity, evidence = LearnerActivity(), CompetencyEvidence()
    folder, _ = await _folder(log, [activity, evidence])
    second = folder.members[1].applier
    finish = second.finish

    class Crash(Exception):
        pass

    async def crashing(conn: Any, batch: Any) -> Any:
        raise Crash

    second.finish = crashing  # type: ignore[method-assign]
    with pytest.raises(Crash):
        await folder.step(50)
    # Neither view, nor either projection's checkpoints: the first one's changes went with the second's.
    assert await view_rows(log, activity) == []
    assert await view_rows(log, evidence, "observations") == []
    for member in folder.members:
        assert set((await _marks(log, member.generation)).values()) == {0}
    second.finish = finish  # type: ignore[method-assign]
    while (await folder.step(50)).covered:  # type: ignore[union-attr]
        pass
    folder.close()
    assert await view_rows(log, activity) == await replayed_rows(log, activity)
    assert await view_rows(log, evidence, "observations") == await replayed_rows(log, evidence, "observations")
    head = await log.max_position()
    for member in folder.members:
        assert set((await _marks(log, member.generation)).values()) == {head}


async def test_each_payload_is_decoded_once_for_the_group_and_let_go(log: EventLog) -> None:
    await log.append("district-7", [scored_statement_event(n) for n in range(30)])
    folder, _ = await _folder(log, [LearnerActivity(), CompetencyEvidence()])
    read = await log.scan_after(0, 100, folder.event_types)
    decodes = 0

    import orjson

    import proficio_projector._runtime as runtime

    real = orjson.loads

    def loads(payload: bytes) -> Any:
        nonlocal decodes
        decodes += 1
        return real(payload)

    scan = log.scan_after

    async def same(position: int, limit: int, types: Any = None) -> Any:
        return read if position == 0 else await scan(position, limit, types)

    log.scan_after = same  # type: ignore[method-assign]
    original = runtime.orjson
    runtime.orjson = type("Counted", (), {"loads": staticmethod(loads)})  # type: ignore[assignment]
    try:
        await folder.step(100)
    finally:
        runtime.orjson = original
        folder.close()
    assert decodes == 30  # once each, for both projections
    assert all(e.decoded is None for e in read[0])  # let go once folded
    assert len(await view_rows(log, CompetencyEvidence(), "observations")) == 30


@pytest.mark.parametrize("pipelined", [False, True])
async def test_kept_rows_are_not_loaded_again_and_are_dropped_when_another_worker_wrote(
    log: EventLog, pipelined: bool
) -> None:
    activity = LearnerActivity()
    await log.append("district-7", [statement_event(n % 5, n) for n in range(50)])
    folder, keepers = await _folder(log, [activity], owner="a", cached_rows=1000, pipelined=pipelined)
    store = folder.members[0].applier.store
    loaded: list[int] = []
    load = store.load

    async def counted(conn: Any, table: str, keys: Any) -> Any:
        keys = list(keys)
        loaded.append(len(keys))
        return await load(conn, table, keys)

    store.load = counted  # type: ignore[method-assign]
    await folder.step(1000)
    await folder.flush()  # pipelined, the step returns while its batch commits
    assert loaded == [5]
    await log.append("district-7", [statement_event(n % 5, n) for n in range(50, 80)])
    await folder.step(1000)
    await folder.flush()  # pipelined, the step returns while its batch commits
    assert loaded == [5]  # the five learners' rows were kept: nothing loaded
    # Another worker takes the segments over and folds more of the learners' statements.
    for keeper in keepers:
        await keeper.release()
    other, others = await _folder(log, [activity], owner="b")
    await log.append("district-7", [statement_event(n % 5, n) for n in range(80, 100)])
    await other.step(1000)
    other.close()
    for keeper in others:
        await keeper.release()
    for keeper in keepers:
        await keeper.refresh()
    await log.append("district-7", [statement_event(n % 5, n) for n in range(100, 120)])
    await folder.step(1000)
    await folder.flush()  # pipelined, the step returns while its batch commits
    folder.close()
    assert loaded == [5, 5]  # its kept rows were stale: loaded again
    assert await view_rows(log, activity) == await replayed_rows(log, activity)
    assert sum(r["statements"] for r in await view_rows(log, activity)) == 120


@pytest.mark.parametrize("cached_rows", [1000, 0])
async def test_kept_rows_of_a_stream_held_behind_a_dead_letter_give_way_to_its_replay(
    log: EventLog, cached_rows: int
) -> None:
    """Also pipelined (``cached_rows`` 0), a batch at a time: the batch after the poison's holds its stream too."""
    Picky.fixed = False
    await log.append("district-7", [statement_event(1, 0), statement_event(2, 1)])
    poison = await log.append("district-7", [statement_event(1, 2, verb="http://example.org/poison")])
    await log.append("district-7", [statement_event(1, 3)])
    picky = Picky()
    projector = SqlProjector(log, picky, RunnerSettings(owner="w", cached_rows=cached_rows, batch_size=1, **FAST))
    async with running(projector):
        await caught_up(log, picky.name)
        Picky.fixed = True
        resolved, _ = await replay_dead_letters(log, picky)  # from "another process", while it runs
        assert poison.events[0].position in resolved
        await log.append("district-7", [statement_event(1, 4), statement_event(2, 5)])
        await caught_up(log, picky.name)
    rows = {r["learner"]: r["statements"] for r in await view_rows(log, picky)}
    assert rows == {"learner:1": 4, "learner:2": 2}
    assert await view_rows(log, picky) == await replayed_rows(log, picky)
    Picky.fixed = False


class ActivityTwo(LearnerActivity):
    version = LearnerActivity.version + 1


async def test_a_member_with_new_code_is_rebuilt_while_the_group_serves_the_others(log: EventLog) -> None:
    await log.append("district-7", [scored_statement_event(n) for n in range(60)])
    settings = RunnerSettings(owner="w", **FAST)
    async with running(SqlFoldGroup(log, [LearnerActivity(), CompetencyEvidence()], settings)):
        await caught_up(log, "learner_activity")
        await caught_up(log, "competency_evidence")
    async with running(SqlFoldGroup(log, [ActivityTwo(), CompetencyEvidence()], settings)):
        await log.append("district-7", [scored_statement_event(n) for n in range(60, 90)])
        live = await active_code(log, ActivityTwo.version)
        await caught_up(log, "learner_activity")
        await caught_up(log, "competency_evidence")
    assert live.generation == 2
    assert await view_rows(log, ActivityTwo()) == await replayed_rows(log, ActivityTwo())
    evidence = CompetencyEvidence()
    assert await view_rows(log, evidence, "observations") == await replayed_rows(log, evidence, "observations")


class _Mixed:
    """A projection whose one table holds a numeric column (no exact JSON form) and one of simple types."""

    name = "json_check"
    version = 1
    event_types = None
    partitioned = False
    tables = (
        ViewTable(
            "simple",
            key=(sa.Column("tenant", sa.Text), sa.Column("k", sa.Integer)),
            values=(sa.Column("label", sa.Text, nullable=True), sa.Column("on", sa.Boolean, nullable=True),
                    sa.Column("big", sa.BigInteger, nullable=True)),
        ),
        ViewTable(
            "exact",
            key=(sa.Column("tenant", sa.Text), sa.Column("k", sa.Integer)),
            values=(sa.Column("amount", sa.Numeric(10, 3), nullable=True),),
        ),
    )  # fmt: skip


async def test_rows_written_as_json_or_as_arrays_are_the_same_rows(log: EventLog) -> None:
    """On PostgreSQL tables of simple types are written as one JSON parameter, others as arrays (SQLite: rows)."""
    store = ViewStore(_Mixed(), Generation("json_check", 1, 1, "active", 1, 0))  # type: ignore[arg-type]
    labels = ["plain", 'quo"te', "back\\slash", "ünïcødé", "new\nline", None]
    puts = {}
    for k, label in enumerate(labels):
        puts[("simple", ("t", k))] = ({"tenant": "t", "k": k, "label": label, "on": k % 2 == 0,
                                        "big": 2**62 + k}, 10 + k)  # fmt: skip
        puts[("exact", ("t", k))] = ({"tenant": "t", "k": k, "amount": Decimal("1.125") * k}, 10 + k)
    rows = [v[0] | {"last_position": v[1]} for key, v in puts.items() if key[0] == "simple"]
    assert store._json_rows("simple", rows) is not None  # the simple table travels as JSON...
    with_nul = [*rows, rows[0] | {"k": 99, "label": "nul\x00inside"}]
    assert store._json_rows("simple", with_nul) is None  # ... unless a text holds NUL (PostgreSQL's json cannot)
    # True in an integer column: asyncpg writes 1, PostgreSQL's json refuses it: the arrays.
    assert store._json_rows("simple", [rows[0] | {"big": True}]) is None
    exact = [v[0] | {"last_position": v[1]} for key, v in puts.items() if key[0] == "exact"]
    assert store._json_rows("exact", exact) is None  # a numeric column: the arrays
    async with log.transaction() as conn:
        await store.create_tables(conn)
        await store.write(conn, puts, {})
        # An older position changes nothing (the per-row guard), on the JSON path too.
        stale = {("simple", ("t", 0)): ({"tenant": "t", "k": 0, "label": "stale", "on": None, "big": None}, 1)}
        await store.write(conn, stale, {})
        simple = await store.rows(conn, "simple")
        amounts = await store.rows(conn, "exact")
    assert [r["label"] for r in simple] == labels
    assert [r["on"] for r in simple] == [k % 2 == 0 for k in range(len(labels))]
    assert [r["big"] for r in simple] == [2**62 + k for k in range(len(labels))]
    assert [r["amount"] for r in amounts] == [Decimal("1.125") * k for k in range(len(labels))]


async def test_view_indexes_use_the_access_method_declared_where_the_database_has_it(log: EventLog) -> None:
    """The evidence view's observations: BRIN on last_position, hash on statement_id in PostgreSQL; plain indexes on
    the same columns in SQLite. Its queries by either column find the rows."""
    store = ViewStore(CompetencyEvidence(), Generation("competency_evidence", 1, 3, "active", 1, 0))
    physical = store.table("observations").name
    row = {"activity": None, "competencies": "[]", "norm": "1", "success": True, "timestamp_us": 1, "stored_us": 1,
           "source": "statement", "authority": None, "raw": None}  # fmt: skip
    puts = {("observations", ("t", f"l{i}", f"s{i}")): ({"tenant": "t", "learner": f"l{i}", "statement_id": f"s{i}",
                                                           **row}, 100 + i) for i in range(50)}  # fmt: skip
    async with log.transaction() as conn:
        await store.create_tables(conn)
        await store.write(conn, puts, {})
        if conn.dialect.name == "postgresql":
            found = await conn.execute(sa.text(
                "SELECT am.amname, pg_get_indexdef(i.indexrelid) FROM pg_index i"
                " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam"
                " WHERE i.indrelid = CAST(:t AS regclass) AND NOT i.indisprimary"
            ), {"t": physical})  # fmt: skip
            methods = {method: definition.rsplit("(", 1)[1].rstrip(")") for method, definition in found}
            assert methods == {"brin": "last_position", "hash": "statement_id"}
        else:
            found = await conn.execute(sa.text(f"SELECT name FROM pragma_index_list('{physical}') WHERE origin = 'c'"))
            columns = {
                name: [c for (c,) in await conn.execute(sa.text(f"SELECT name FROM pragma_index_info('{name}')"))]
                for (name,) in found.all()
            }
            assert sorted(columns.values()) == [["last_position"], ["statement_id"]]
        table = store.table("observations")
        since = await conn.execute(sa.select(table.c.learner).where(table.c.tenant == "t", table.c.last_position > 140))
        assert sorted(learner for (learner,) in since) == sorted(f"l{i}" for i in range(41, 50))
        by_id = await conn.execute(sa.select(table.c.learner).where(table.c.statement_id == "s7"))
        assert by_id.all() == [("l7",)]


@pytest.mark.parametrize("cached_rows", [0, 1000])
async def test_a_pipelined_folder_folds_each_batch_while_the_one_before_commits(
    log: EventLog, cached_rows: int
) -> None:
    """The batch after a committing one is read and folded meanwhile; its rows are the ones the batch before it
    leaves, committed or not, and the stored ones for the others (learners 0-6 in one batch, 7-13 in the next, then
    the same 13 learners in every batch), so the views equal a replay and no statement is lost or counted twice."""
    await log.append("district-7", [statement_event((n // 50) % 2 * 7 + n % 7, n) for n in range(200)])
    await log.append("district-7", [scored_statement_event(n) for n in range(200, 400)])
    activity, evidence = LearnerActivity(), CompetencyEvidence()
    folder, _ = await _folder(log, [activity, evidence], pipelined=True, cached_rows=cached_rows)
    events: list[tuple[str, int]] = []
    loaded: list[int] = []
    load = applier_load = folder.members[0].applier.store.load

    async def counted(conn: Any, table: str, keys: Any) -> Any:
        keys = list(keys)
        loaded.append(len(keys))
        return await load(conn, table, keys)

    folder.members[0].applier.store.load = counted  # type: ignore[method-assign]
    applier = folder.members[0].applier
    prepare, finish = applier.prepare, applier.finish

    async def prepared(conn: Any, batch: Any, **kwargs: Any) -> Any:
        events.append(("prepare", batch[0].position))
        return await prepare(conn, batch, **kwargs)

    async def slow_finish(conn: Any, batch: Any) -> Any:
        events.append(("commit", batch.relevant[0].position))
        await asyncio.sleep(0.2)  # a slow database: the next batch is folded meanwhile
        events.append(("committed", batch.relevant[0].position))
        return await finish(conn, batch)

    applier.prepare, applier.finish = prepared, slow_finish  # type: ignore[method-assign]
    while (await folder.step(50)).covered:  # type: ignore[union-attr]
        pass
    folder.close()
    assert await view_rows(log, activity) == await replayed_rows(log, activity)
    assert sum(r["statements"] for r in await view_rows(log, activity)) == 400
    assert await view_rows(log, evidence, "observations") == await replayed_rows(log, evidence, "observations")
    # From the second batch on, each batch is prepared before the one before it has committed.
    starts = [position for what, position in events if what == "prepare"]
    assert len(starts) == 8
    for before, after in itertools.pairwise(starts[1:]):
        assert events.index(("prepare", after)) < events.index(("committed", before))
    head = await log.max_position()
    for member in folder.members:
        assert set((await _marks(log, member.generation)).values()) == {head}
    folder.members[0].applier.store.load = applier_load  # type: ignore[method-assign]
    if cached_rows:  # each learner's row loaded once; then from the batch before, or kept
        assert sum(loaded) == 14
    else:
        assert sum(loaded) > 14


async def test_a_pipelined_batch_whose_lease_went_meanwhile_is_not_written(log: EventLog) -> None:
    await log.append("district-7", [scored_statement_event(n) for n in range(150)])
    activity, evidence = LearnerActivity(), CompetencyEvidence()
    folder, _ = await _folder(log, [activity, evidence], pipelined=True)
    first = await folder.step(50)
    assert first is not None
    marks = [await _marks(log, m.generation) for m in folder.members]
    # Another worker took one of the activity view's segments since (the folder does not know yet).
    async with log.transaction() as conn:
        await conn.execute(leases.update().where(leases.c.name == folder.members[0].generation.consumer,
                                                 leases.c.segment == 1).values(owner="b"))  # fmt: skip
    await folder.step(50)  # folded, and its commit finds the lease gone: nothing written
    assert await folder.step(50) == Step(0, 0)  # the pipeline starts again from the stored checkpoints
    assert [await _marks(log, m.generation) for m in folder.members] == marks
    async with log.transaction() as conn:
        await conn.execute(leases.update().where(leases.c.owner == "b").values(owner="a"))
    while (await folder.step(50)).covered:  # type: ignore[union-attr]
        pass
    folder.close()
    assert await view_rows(log, activity) == await replayed_rows(log, activity)
    assert sum(r["statements"] for r in await view_rows(log, activity)) == 150


async def test_rows_of_a_retired_generation_fail_as_the_runner_retries(log: EventLog) -> None:
    """A generation swapped out and dropped under a worker still folding into it: loading its rows fails with an
    error the runner retries on (it then finds the new generation), on the driver connection too."""
    from proficio_projector._runtime import RETRYABLE

    activity = LearnerActivity()
    generation = await ensure_active(log, activity)
    store = ViewStore(activity, generation)
    async with log.transaction() as conn:
        await store.drop_tables(conn)
    async with log.engine.connect() as conn:
        with pytest.raises(RETRYABLE):
            await store.load(conn, "learners", [("district-7", "learner:1")])


# PostgreSQL alone: SQLite has no row locks (a writer holds the whole database).
@pytest.mark.parametrize("store_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
async def test_a_commit_checking_its_leases_never_deadlocks_with_their_renewal(log: EventLog) -> None:
    """A pipelined commit holds its segments' lease rows (``holds_all``) while the same worker's lease keeper renews
    them on another connection. Both take the rows in segment order, so one waits for the other instead of each
    holding a row the other wants (PostgreSQL: found while two commits overlapped in bench.keepup; the rows' order on
    disk, after updates, is not their segments' order)."""
    keeper = LeaseKeeper(log, "deadlock-check", 4, "worker-a", ttl=30, fair=False)
    async with log.transaction() as conn:  # rows on disk in the reverse of their segments' order
        for segment in (3, 2, 1, 0):
            await conn.execute(leases.insert().values(name="deadlock-check", segment=segment, owner="worker-a",
                                                      expires_us=2**62))  # fmt: skip
    renewal_holds_first = asyncio.Event()
    commit_waits = asyncio.Event()

    def renewed(segment: int) -> sa.Update:
        where = sa.and_(leases.c.name == "deadlock-check", leases.c.segment == segment)
        return leases.update().where(where).values(expires_us=2**62 + 1)

    async def renew() -> None:  # the keeper's renewal, statement by statement: segment 0, then the others
        async with log.transaction() as conn:
            await conn.execute(renewed(0))
            renewal_holds_first.set()
            await commit_waits.wait()
            await asyncio.sleep(0.3)  # the commit's statement is blocked on segment 0 by now
            for segment in (1, 2, 3):
                await conn.execute(renewed(segment))

    async def commit() -> bool:
        await renewal_holds_first.wait()
        async with log.transaction() as conn:
            # As PostgreSQL plans it for a leases table of many dead rows: read in the order on disk.
            await conn.execute(sa.text("SET LOCAL enable_indexscan = off"))
            await conn.execute(sa.text("SET LOCAL enable_bitmapscan = off"))
            commit_waits.set()
            return await keeper.holds_all(conn, [0, 1, 2, 3])

    _, held = await asyncio.wait_for(asyncio.gather(renew(), commit()), timeout=20)
    assert held  # and neither transaction was chosen as a deadlock's victim
