"""One read and decode of the log per process for the statement projections (``SharedScan``), on SQLite and
PostgreSQL: it answers every scan as the log would, the projections fed through it equal a replay, and the
statements are fetched once for both; view rows written as JSON or as arrays give the same rows."""

from __future__ import annotations

import random
from decimal import Decimal

import sqlalchemy as sa

from proficio_events import EventLog, NewEvent, StoredEvent
from proficio_projector import (
    Generation,
    LearnerActivity,
    RunnerSettings,
    SharedScan,
    ViewStore,
    ViewTable,
    sql_projectors,
)
from proficio_projector.competency import CompetencyEvidence

from .support import FAST, caught_up, replayed_rows, running, statement_event, view_rows, whole_log

STATEMENTS = frozenset({"StatementStored", "StatementVoided"})


async def _mixed_log(log: EventLog, count: int) -> None:
    """Statements (some voided), and other event types between them that the shared scan must pass over."""
    rng = random.Random(5)
    batch: list[NewEvent] = []
    for n in range(count):
        if rng.random() < 0.2:
            batch.append(NewEvent.of("reference", "SomethingElse", {"n": n}))
        else:
            batch.append(statement_event(n % 9, n, voiding=rng.random() < 0.05))
        if len(batch) == 37:
            await log.append("district-7", batch)
            batch = []
    if batch:
        await log.append("district-7", batch)


def _expected(whole: list[StoredEvent], position: int, covered: int, types: frozenset[str]) -> list[int]:
    return [e.position for e in whole if position < e.position <= covered and e.event_type in types]


async def test_a_shared_scan_answers_every_scan_as_the_log_does(log: EventLog) -> None:
    await _mixed_log(log, 700)
    whole = await whole_log(log)
    head = whole[-1].position
    shared = SharedScan(log, STATEMENTS | {"SomethingElse"}, read_size=50, keep=120)
    rng = random.Random(11)
    # Three consumers moving at their own pace (one often jumping back, as a restarted worker would).
    positions = {"a": 0, "b": 0, "c": 0}
    subsets = {"a": STATEMENTS, "b": frozenset({"StatementStored"}), "c": STATEMENTS | {"SomethingElse"}}
    for _ in range(400):
        consumer = rng.choice(sorted(positions))
        if consumer == "c" and rng.random() < 0.1:
            positions["c"] = rng.randrange(0, head)
        position, limit, types = positions[consumer], rng.choice([1, 7, 40, 300]), subsets[consumer]
        batch, covered = await shared.scan_after(position, limit, types, consumer=consumer)
        assert position <= covered <= head
        found = [e.position for e in batch]
        wanted = _expected(whole, position, covered, types)
        assert found == wanted, (consumer, position, limit)
        assert len(found) <= limit
        if len(found) < limit:
            assert covered == head or covered >= position  # the scan covered up to its end
        assert all(e.decoded is not None and e.data() == e.decoded for e in batch)
        positions[consumer] = covered
    assert shared.stats.served > 0
    # At most a read or two for each scan: a consumer behind the window is served from its own read (it once
    # looped, joining the window and being trimmed out of it again, thousands of reads for one scan).
    assert shared.stats.reads <= 2 * 400
    assert shared.stats.direct > 0  # the consumer jumping back read behind the window on its own
    # Past the head: nothing, and the position stays.
    assert await shared.scan_after(head, 10, STATEMENTS, consumer="a") == ([], head)


async def test_statement_projections_share_one_read_and_equal_a_replay(log: EventLog) -> None:
    count = 900
    for first in range(0, count, 60):
        await log.append("district-7", [_scored(n) for n in range(first, first + 60)])
    activity, evidence = LearnerActivity(), CompetencyEvidence()
    assert all(p.reader is None for p in sql_projectors(log, [activity, evidence], RunnerSettings()))  # opt-in
    settings = RunnerSettings(owner="w", batch_size=200, shared_read=True, **FAST)
    projectors = sql_projectors(log, [activity, evidence], settings)
    reader = projectors[0].reader
    assert reader is not None
    assert projectors[1].reader is reader
    async with running(*projectors):
        await caught_up(log, activity.name)
        await caught_up(log, evidence.name)
    assert await view_rows(log, activity) == await replayed_rows(log, activity)
    assert await view_rows(log, evidence, "observations") == await replayed_rows(log, evidence, "observations")
    assert len(await view_rows(log, evidence, "observations")) == count
    # Each statement fetched (and decoded) once for both projections, not once for each; a little more when
    # one runs ahead and reads behind the other's window.
    assert count <= reader.stats.fetched < 1.5 * count


def _scored(n: int) -> NewEvent:
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
