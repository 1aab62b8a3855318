"""Bulk inserts beside the log: large inserts send text, integer and boolean columns packed into one text each
on PostgreSQL (``_bulk._pack``); what lands in the table must be exactly what plain arrays would have stored,
whatever the values (NULLs, empty strings, the separator itself), on both backends."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from proficio_events import EventLog, bulk_insert, bulk_insert_many, bulk_upsert
from proficio_events import _bulk as bulk

metadata = sa.MetaData()
things = sa.Table(
    "bulk_things",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("name", sa.Text, nullable=True),
    sa.Column("small", sa.SmallInteger, nullable=True),
    sa.Column("flag", sa.Boolean, nullable=True),
    sa.Column("data", sa.LargeBinary, nullable=True),
)
others = sa.Table("bulk_others", metadata, sa.Column("id", sa.BigInteger, primary_key=True), sa.Column("name", sa.Text))


async def _fresh(log: EventLog) -> None:
    async with log.transaction() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)


async def _all(log: EventLog, table: sa.Table) -> list[tuple[Any, ...]]:
    async with log.engine.connect() as conn:
        return [tuple(r) for r in await conn.execute(sa.select(table).order_by(table.c.id))]


def _rows(count: int, start: int = 0) -> list[tuple[Any, ...]]:
    return [
        (
            i,
            None if i % 7 == 0 else ("" if i % 5 == 0 else f"name {i} ü ✓"),
            None if i % 11 == 0 else i % 300 - 150,
            None if i % 13 == 0 else i % 2 == 0,
            None if i % 3 == 0 else bytes([i % 256]) * 3,
        )
        for i in range(start, start + count)
    ]


@pytest.mark.parametrize("count", [1, bulk.PACK_MIN_ROWS, 500])
async def test_rows_come_back_as_inserted(log: EventLog, count: int) -> None:
    await _fresh(log)
    rows = _rows(count)
    async with log.transaction() as conn:
        await bulk_insert(conn, things, rows)
    assert await _all(log, things) == rows


@pytest.mark.parametrize(
    "awkward",
    ["a\x1fb", "\x1e", "x\x1ey", "\x1f", "", "NULL", "{}", '"quoted", comma', "back\\slash"],
)
async def test_values_that_look_like_the_packing_are_stored_as_they_are(log: EventLog, awkward: str) -> None:
    await _fresh(log)
    rows = _rows(40)
    rows[17] = (17, awkward, 1, True, b"")
    async with log.transaction() as conn:
        await bulk_insert(conn, things, rows)
    assert await _all(log, things) == rows


def test_packing_declines_what_it_cannot_send_unchanged() -> None:
    names = tuple(c.name for c in things.columns)
    rows = _rows(40)
    packed, arguments = bulk._arguments(things, names, rows)
    assert packed
    assert isinstance(arguments[1], str)
    assert isinstance(arguments[4], list)  # bytea stays an array
    for awkward in ("a\x1fb", "\x1e", "x\x1ey"):
        changed = [*rows[:5], (5, awkward, 1, True, None), *rows[6:]]
        assert bulk._arguments(things, names, changed)[0] is False
    mixed = [*rows[:5], (5, 42, 1, True, None), *rows[6:]]  # not a str in a text column
    assert bulk._arguments(things, names, mixed)[0] is False
    assert bulk._arguments(things, names, rows[: bulk.PACK_MIN_ROWS - 1])[0] is False


async def test_many_inserts_in_one_statement_and_upserts(log: EventLog) -> None:
    await _fresh(log)
    rows = _rows(100)
    second = [(i, f"other {i}") for i in range(60)]
    async with log.transaction() as conn:
        await bulk_insert_many(conn, [(things, rows, False), (others, second, False)])
    assert await _all(log, things) == rows
    assert await _all(log, others) == second
    changed = [(i, None if i % 2 else f"new {i}", 7, False, b"z") for i in range(0, 100, 2)]
    async with log.transaction() as conn:
        await bulk_upsert(conn, things, changed, key=("id",))
        await bulk_insert(conn, others, [(i, "dup") for i in range(50, 90)], ignore_conflicts=True)
    expected = {r[0]: r for r in rows} | {r[0]: r for r in changed}
    assert await _all(log, things) == [expected[i] for i in sorted(expected)]
    assert await _all(log, others) == second + [(i, "dup") for i in range(60, 90)]


async def test_copy_stores_what_the_insert_statement_would(log: EventLog, monkeypatch: pytest.MonkeyPatch) -> None:
    """``bulk_insert_many(..., copy=True)``: from ``COPY_MIN_ROWS`` rows in all, on PostgreSQL, the plain inserts go in
    by COPY (awkward values, NULLs and bytes as they are), the deferred ones too; inserts with a conflict clause keep
    theirs. Fewer rows, or SQLite: the one statement as before."""
    copied: list[str] = []
    if log.engine.dialect.name == "postgresql":
        import asyncpg

        original = asyncpg.Connection.copy_records_to_table

        async def counting(self: Any, table_name: str, **kwargs: Any) -> Any:
            copied.append(table_name)
            return await original(self, table_name, **kwargs)

        monkeypatch.setattr(asyncpg.Connection, "copy_records_to_table", counting)
    await _fresh(log)
    rows = _rows(150)
    rows[17] = (17, "a\x1fb\x1e", 1, True, b"")
    deferred = [(i, f"deferred {i}") for i in range(60)]
    async with log.transaction() as conn:
        await bulk_insert(conn, others, [(i, "first") for i in range(60, 70)])
        bulk.defer_insert(conn, others, deferred)
        await bulk_insert_many(
            conn,
            [(things, rows, False), (others, [(i, "dup") for i in range(60, 80)], True)],
            copy=True,
        )
    assert await _all(log, things) == rows
    assert await _all(log, others) == [*deferred, *[(i, "first") for i in range(60, 70)],
                                       *[(i, "dup") for i in range(70, 80)]]  # fmt: skip
    assert copied == (["bulk_others", "bulk_things"] if log.engine.dialect.name == "postgresql" else [])
    copied.clear()
    await _fresh(log)
    few = _rows(bulk.COPY_MIN_ROWS - 1)
    async with log.transaction() as conn:
        await bulk_insert_many(conn, [(things, few, False)], copy=True)
    assert await _all(log, things) == few
    assert copied == []
