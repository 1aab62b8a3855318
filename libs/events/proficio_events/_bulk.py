"""Fast multi-row inserts for the tables that live beside the log (inline projections, views).

PostgreSQL: one ``INSERT ... SELECT FROM unnest(...)`` with one array per column, prepared once for any
number of rows (asyncpg's ``executemany`` sends a message per row). SQLite: the driver's
``executemany``, which loops in C.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

#: What an insert does with rows that break a unique constraint: fail (False), skip them (True), or an
#: ``ON CONFLICT ...`` clause of its own (an upsert), appended to the statement as given.
Conflicts = bool | str

_PG_SQL: dict[tuple[str, tuple[str, ...], Conflicts, bool], str] = {}

# Text, integer and boolean columns of a large insert go to PostgreSQL as ONE text parameter each (the
# values joined with a separator, split server-side by ``string_to_array``) rather than as an array:
# asyncpg's array encoder calls ``isinstance`` against ``collections.abc`` classes for every element
# (Python-level ``__instancecheck__`` calls, ~0.3 µs each), which was ~12% of a batched ingest's server CPU.
# Values that contain the separator or the NULL marker (never seen in practice) send the plain arrays.
_SEPARATOR = "\x1f"
_NULL = "\x1e"
_PACKED_TYPES = {"TEXT": str, "BIGINT": int, "INTEGER": int, "SMALLINT": int, "BOOLEAN": bool}
#: Below this many rows the arrays are sent as they are (the packing would save nothing worth its checks).
PACK_MIN_ROWS = 16


def _on_conflict(ignore_conflicts: Conflicts) -> str:
    if isinstance(ignore_conflicts, str):
        return ignore_conflicts
    return " ON CONFLICT DO NOTHING" if ignore_conflicts else ""


def _kinds(table: sa.Table, columns: tuple[str, ...]) -> list[str]:
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    return [table.c[name].type.compile(dialect=dialect) for name in columns]


def _pg_sql(table: sa.Table, columns: tuple[str, ...], ignore_conflicts: Conflicts, packed: bool = False) -> str:
    key = (table.name, columns, ignore_conflicts, packed)
    if key not in _PG_SQL:
        parts = []
        for i, kind in enumerate(_kinds(table, columns), start=1):
            if packed and kind in _PACKED_TYPES:
                parts.append(f"string_to_array(${i}::text, E'\\x1f', E'\\x1e')::{kind}[]")
            else:
                parts.append(f"${i}::{kind}[]")
        sql = f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({', '.join(parts)})"
        _PG_SQL[key] = sql + _on_conflict(ignore_conflicts)
    return _PG_SQL[key]


_KINDS: dict[tuple[str, tuple[str, ...]], list[str]] = {}


def _pack(kind: str, column: list[Any]) -> str | None:
    """The column as one text for ``string_to_array`` (see ``_SEPARATOR``), or None if it cannot be."""
    want = _PACKED_TYPES[kind]
    types = set(map(type, column))
    if types == {want}:
        values = column
    elif types == {want, type(None)}:
        values = [_NULL if v is None else v for v in column]
    else:
        return None
    if want is str:
        text = _SEPARATOR.join(values)
        if text.count(_NULL) != column.count(None) or text.count(_SEPARATOR) != len(values) - 1:
            return None  # a value holds the separator or the NULL marker
        # string_to_array('') is an empty array, not one empty string: a single '' is sent as an array.
        return text if text else None
    return _SEPARATOR.join(map(str, values))  # True/False: PostgreSQL reads booleans case-insensitively


def _arguments(table: sa.Table, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]) -> tuple[bool, list[Any]]:
    """(packed, the statement's parameters): one array per column, or packed texts where the types allow."""
    arrays = _columns(rows)
    if len(rows) < PACK_MIN_ROWS:
        return False, arrays
    key = (table.name, columns)
    kinds = _KINDS.get(key)
    if kinds is None:
        kinds = _KINDS[key] = _kinds(table, columns)
    packed: list[Any] = []
    for kind, column in zip(kinds, arrays, strict=True):
        if kind in _PACKED_TYPES:
            text = _pack(kind, column)
            if text is None:
                return False, arrays
            packed.append(text)
        else:
            packed.append(column)
    return True, packed


async def _pg_execute(conn: AsyncConnection, sql: str, arrays: Sequence[Any]) -> None:
    """Run ``sql`` with one parameter per column on the driver connection of the open transaction."""
    raw = await conn.get_raw_connection()
    await raw.driver_connection.execute(sql, *arrays)  # type: ignore[union-attr]


def _columns(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)]


async def bulk_insert(
    conn: AsyncConnection,
    table: sa.Table,
    rows: Sequence[Sequence[Any]],
    *,
    columns: Sequence[str] | None = None,
    ignore_conflicts: Conflicts = False,
) -> None:
    """Insert ``rows`` (tuples in the order of ``columns``, by default the table's) in the open transaction.

    With ``ignore_conflicts``, rows that would break a unique constraint are skipped; given as a string, it
    is the statement's own ``ON CONFLICT`` clause (an upsert).
    """
    if not rows:
        return
    names = tuple(columns) if columns is not None else tuple(c.name for c in table.columns)
    if conn.dialect.name == "postgresql":
        packed, arguments = _arguments(table, names, rows)
        await _pg_execute(conn, _pg_sql(table, names, ignore_conflicts, packed), arguments)
        return
    verb = "INSERT OR IGNORE" if ignore_conflicts is True else "INSERT"
    clause = ignore_conflicts if isinstance(ignore_conflicts, str) else ""
    marks = ", ".join("?" for _ in names)
    await conn.exec_driver_sql(f"{verb} INTO {table.name} ({', '.join(names)}) VALUES ({marks}){clause}", list(rows))


#: Where ``defer_insert`` keeps inserts, on the connection, until the next ``bulk_insert_many`` or flush.
_DEFERRED = "proficio_deferred_inserts"


def defer_insert(conn: AsyncConnection, table: sa.Table, rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows`` later in this transaction, in the same statement as the next ``bulk_insert_many``.

    The log defers a small batch's own rows this way while its inline handler runs, so that the events
    and the handler's rows go in together, in one round trip. Nothing may read the rows before
    ``flush_deferred`` (or that ``bulk_insert_many``).
    """
    conn.info.setdefault(_DEFERRED, []).append((table, rows, False))


async def flush_deferred(conn: AsyncConnection) -> None:
    """Insert what ``defer_insert`` left (nothing if a ``bulk_insert_many`` already took it)."""
    pending = conn.info.pop(_DEFERRED, [])
    if pending:
        await bulk_insert_many(conn, pending)


def drop_deferred(conn: AsyncConnection) -> None:
    """Forget deferred inserts (the transaction failed): the connection goes back to the pool clean."""
    conn.info.pop(_DEFERRED, None)


#: ``bulk_insert_many(..., copy=True)``: from this many rows in all, the inserts go in by binary COPY.
COPY_MIN_ROWS = 200


async def bulk_insert_many(
    conn: AsyncConnection,
    inserts: Sequence[tuple[sa.Table, Sequence[Sequence[Any]], Conflicts]],
    *,
    copy: bool = False,
) -> None:
    """Several ``bulk_insert`` calls ``(table, rows, ignore_conflicts)`` in one round trip on PostgreSQL.

    The inserts become the data-modifying CTEs of one statement (they see none of each other's rows,
    so they must not depend on one another). Deferred inserts (``defer_insert``) go in first.

    With ``copy``, on PostgreSQL and from ``COPY_MIN_ROWS`` rows in all, each insert without a conflict clause
    goes in by binary COPY instead (one round trip per table, in the same order): for many small rows the
    database's CPU per row is lower (COPY inserts heap tuples in batches, one WAL record per page, and reads
    binary values rather than parsing the packed texts), and so is the client's (asyncpg encodes the records
    in C).
    """
    inserts = [*conn.info.pop(_DEFERRED, []), *inserts]
    work = [(table, rows, ignore) for table, rows, ignore in inserts if rows]
    if copy and conn.dialect.name == "postgresql" and sum(len(rows) for _t, rows, _i in work) >= COPY_MIN_ROWS:
        await bulk_insert_many(conn, [w for w in work if w[2] is not False])
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        for table, rows, ignore in work:
            if ignore is False:
                names = tuple(c.name for c in table.columns)
                await driver.copy_records_to_table(table.name, records=rows, columns=names)  # type: ignore[union-attr]
        return
    if conn.dialect.name != "postgresql" or len(work) < 2:
        for table, rows, ignore in work:
            await bulk_insert(conn, table, rows, ignore_conflicts=ignore)
        return
    shape: list[tuple[sa.Table, Conflicts, bool]] = []
    arguments: list[Any] = []
    for table, rows, ignore in work:
        packed, own = _arguments(table, _names(table), rows)
        shape.append((table, ignore, packed))
        arguments.extend(own)
    await _pg_execute(conn, _many_sql(tuple(shape)), arguments)


# Keyed by the Table objects themselves: two tables of one name (a test's, say) may differ in their columns.
_MANY_SQL: dict[tuple[tuple[sa.Table, Conflicts, bool], ...], str] = {}
_NAMES: dict[sa.Table, tuple[str, ...]] = {}


def _names(table: sa.Table) -> tuple[str, ...]:
    names = _NAMES.get(table)
    if names is None:
        names = _NAMES[table] = tuple(c.name for c in table.columns)
    return names


def _many_sql(shape: tuple[tuple[sa.Table, Conflicts, bool], ...]) -> str:
    """The one statement of ``bulk_insert_many`` for inserts of this shape (table, conflicts, packed), made once."""
    statement = _MANY_SQL.get(shape)
    if statement is None:
        parts: list[str] = []
        count = 0
        for table, ignore, packed in shape:
            names = _names(table)
            sql = _pg_sql(table, names, ignore, packed)
            # Renumber this insert's parameters after the ones before it.
            for index in range(len(names), 0, -1):
                sql = sql.replace(f"${index}::", f"${index + count}::")
            parts.append(sql)
            count += len(names)
        statement = "WITH " + ", ".join(f"w{i} AS ({sql})" for i, sql in enumerate(parts[:-1])) + " " + parts[-1]
        _MANY_SQL[shape] = statement
    return statement


async def bulk_upsert(
    conn: AsyncConnection, table: sa.Table, rows: Sequence[Sequence[Any]], *, key: Sequence[str]
) -> None:
    """Insert rows (in the table's column order), replacing the other columns of rows whose ``key`` exists."""
    if not rows:
        return
    names = tuple(c.name for c in table.columns)
    updates = ", ".join(f"{name} = excluded.{name}" for name in names if name not in key)
    conflict = f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    if conn.dialect.name == "postgresql":
        packed, arguments = _arguments(table, names, rows)
        await _pg_execute(conn, _pg_sql(table, names, False, packed) + conflict, arguments)
        return
    marks = ", ".join("?" for _ in names)
    await conn.exec_driver_sql(f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks}){conflict}", list(rows))


_PG_SELECT: dict[tuple[str, tuple[str, ...], tuple[str, ...], str, str | None], str] = {}


async def select_in(
    conn: AsyncConnection,
    table: sa.Table,
    columns: Sequence[str],
    equals: dict[str, Any],
    column: str,
    values: Sequence[Any],
    *,
    order_by: str | None = None,
) -> list[tuple[Any, ...]]:
    """``SELECT columns FROM table WHERE <equals> AND column IN values [ORDER BY order_by]``, in the open transaction.

    On PostgreSQL one prepared statement with an array parameter on the driver connection (the hot path of
    an append: SQLAlchemy Core costs several times the query there); elsewhere SQLAlchemy Core.
    """
    if not values:
        return []
    if conn.dialect.name == "postgresql":
        key = (table.name, tuple(columns), tuple(equals), column, order_by)
        if key not in _PG_SELECT:
            dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
            conditions = [f"{name} = ${i}" for i, name in enumerate(equals, start=1)]
            kind = table.c[column].type.compile(dialect=dialect)
            conditions.append(f"{column} = ANY(${len(equals) + 1}::{kind}[])")
            sql = f"SELECT {', '.join(columns)} FROM {table.name} WHERE {' AND '.join(conditions)}"
            _PG_SELECT[key] = sql + (f" ORDER BY {order_by}" if order_by else "")
        raw = await conn.get_raw_connection()
        rows = await raw.driver_connection.fetch(_PG_SELECT[key], *equals.values(), list(values))  # type: ignore[union-attr]
        return [tuple(row) for row in rows]
    query = sa.select(*(table.c[name] for name in columns)).where(
        *(table.c[name] == value for name, value in equals.items()), table.c[column].in_(list(values))
    )
    if order_by:
        query = query.order_by(table.c[order_by])
    return [tuple(row) for row in await conn.execute(query)]
