"""Where projections keep their views: one set of tables per generation, rows guarded by log position.

A generation is one build of a projection: its tables are named ``view_<name>_g<generation>_<table>``,
so a rebuild fills new tables while the active generation keeps serving, and the swap is one update
of ``projector_generations``.
"""

from __future__ import annotations

import functools
import hashlib
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from proficio_events import EventLog, StoreUnavailableError

from ._model import Projection, RowKey, ViewIndex, ViewTable
from ._schema import dead_letters, generations, offsets

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "proficio_projector_version"
ACTIVE = "active"
BUILDING = "building"
RETIRED = "retired"
#: SQL-log segments of a partitioned projection (workers share them); unpartitioned ones have one.
DEFAULT_SEGMENTS = 4
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


def now_us() -> int:
    return time.time_ns() // 1000


@functools.lru_cache(maxsize=131_072)
def segment_of(tenant: str, stream: str, segments: int) -> int:
    """The SQL-log segment of a stream: stable across processes and runs (not Python's ``hash``); kept for
    the streams seen lately (a fold asks for each event's, a learner's stream over and over)."""
    if segments == 1:
        return 0
    digest = hashlib.blake2b(f"{tenant}/{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % segments


@dataclass(frozen=True)
class Generation:
    name: str
    generation: int
    code_version: int
    status: str
    segments: int
    built_through: int

    @property
    def consumer(self) -> str:
        """The consumer id of this generation's checkpoints, offsets, dead letters and Kafka group."""
        return f"projector:{self.name}@{self.generation}"


def check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"projection name {name!r} must be lower-case letters, digits and _ (at most 41)")


def _generation(row: Any) -> Generation:
    return Generation(row.name, row.generation, row.code_version, row.status, row.segments, row.built_through)


async def list_generations(conn: AsyncConnection, name: str | None = None) -> list[Generation]:
    query = sa.select(generations).order_by(generations.c.name, generations.c.generation)
    if name is not None:
        query = query.where(generations.c.name == name)
    return [_generation(row) for row in await conn.execute(query)]


async def active_generation(conn: AsyncConnection, name: str) -> Generation | None:
    found = [g for g in await list_generations(conn, name) if g.status == ACTIVE]
    return found[-1] if found else None


async def create_generation(
    conn: AsyncConnection, projection: Projection, *, status: str, built_through: int = 0
) -> Generation:
    """A new generation (the next number) of ``projection`` with empty tables."""
    check_name(projection.name)
    latest = await conn.scalar(
        sa.select(sa.func.max(generations.c.generation)).where(generations.c.name == projection.name)
    )
    generation = Generation(
        projection.name,
        int(latest or 0) + 1,
        projection.version,
        status,
        DEFAULT_SEGMENTS if projection.partitioned else 1,
        built_through,
    )
    await conn.execute(
        generations.insert().values(
            name=generation.name,
            generation=generation.generation,
            code_version=generation.code_version,
            status=status,
            segments=generation.segments,
            built_through=built_through,
            created_us=now_us(),
            activated_us=now_us() if status == ACTIVE else None,
        )
    )
    await ViewStore(projection, generation).create_tables(conn)
    return generation


async def ensure_active(log: EventLog, projection: Projection) -> Generation:
    """The serving generation of ``projection``, created (empty, from position 0) when it has none."""
    try:
        async with log.transaction() as conn:
            if conn.dialect.name == "postgresql":
                # Workers starting at once: one that read "none" before the first committed would otherwise number
                # its own generation after the first's, and both would be active. (SQLite has one writer at a time.)
                await conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"generation:{projection.name}"}
                )
            found = await active_generation(conn, projection.name)
            if found is not None:
                return found
            return await create_generation(conn, projection, status=ACTIVE)
    except IntegrityError:
        # Another worker created it at the same moment (PostgreSQL): use theirs.
        async with log.engine.connect() as conn:
            found = await active_generation(conn, projection.name)
        if found is None:
            raise
        return found


async def migrate_runtime(log: EventLog) -> None:
    await log.migrate_package(MIGRATIONS, VERSION_TABLE)


#: Table objects of the generations this process has used (see ``ViewStore.__init__``); at most this many.
_MAX_BUILT = 256
_built: dict[tuple[Any, ...], tuple[sa.MetaData, dict[str, sa.Table]]] = {}


class ViewStore:
    """The tables of one generation of a projection, and guarded reads and writes of their rows."""

    def __init__(self, projection: Projection, generation: Generation) -> None:
        self.projection = projection
        self.generation = generation
        self.metadata, self.tables = self._built_tables()
        self._keys: dict[str, list[str]] = {t.name: [c.name for c in t.key] for t in projection.tables}

    def _built_tables(self) -> tuple[sa.MetaData, dict[str, sa.Table]]:
        """The generation's Table objects, built once per process: read APIs make a ViewStore per request,
        and building the tables cost ~0.5 ms each time (and gave SQLAlchemy new objects to key its cache on).
        """
        try:
            key: tuple[Any, ...] = (self.generation.name, self.generation.generation, tuple(self.projection.tables))
            found = _built.get(key)
        except TypeError:  # a ViewTable holding lists is not hashable: build without the cache
            key, found = (), None
        if found is None:
            metadata = sa.MetaData()
            found = metadata, {t.name: self._table(metadata, t) for t in self.projection.tables}
            if key:
                if len(_built) >= _MAX_BUILT:
                    _built.clear()
                _built[key] = found
        return found

    def _table(self, metadata: sa.MetaData, view: ViewTable) -> sa.Table:
        physical = f"view_{self.generation.name}_g{self.generation.generation}_{view.name}"
        columns: list[sa.Column[Any]] = [sa.Column(c.name, c.type, primary_key=True, nullable=False) for c in view.key]
        columns += [sa.Column(c.name, c.type, nullable=c.nullable) for c in view.values]
        columns.append(sa.Column("last_position", sa.BigInteger, nullable=False))
        indexes = []
        for i, declared in enumerate(view.indexes):
            if isinstance(declared, ViewIndex):
                indexes.append(sa.Index(f"ix_{physical}_{i}", *declared.columns, postgresql_using=declared.using))
            else:
                indexes.append(sa.Index(f"ix_{physical}_{i}", *declared))
        return sa.Table(physical, metadata, *columns, *indexes)

    def table(self, name: str) -> sa.Table:
        return self.tables[name]

    async def create_tables(self, conn: AsyncConnection) -> None:
        await conn.run_sync(self.metadata.create_all)

    async def drop_tables(self, conn: AsyncConnection) -> None:
        await conn.run_sync(self.metadata.drop_all)

    async def load(
        self, conn: AsyncConnection, table: str, keys: Iterable[RowKey]
    ) -> dict[RowKey, tuple[dict[str, Any], int]]:
        """The rows with these keys that exist, each with its ``last_position`` apart."""
        physical = self.tables[table]
        names = self._keys[table]
        key_columns = [physical.c[n] for n in names]
        wanted = list(set(keys))
        found: dict[RowKey, tuple[dict[str, Any], int]] = {}
        if conn.dialect.name == "postgresql" and wanted and _as_json(physical):
            # On the driver connection: every column is text, an integer or a boolean, which asyncpg gives as
            # SQLAlchemy would, without its per-row processing (a fold loads thousands of rows per batch).
            raw = await conn.get_raw_connection()
            try:
                records = await raw.driver_connection.fetch(  # type: ignore[union-attr]
                    _load_sql(physical, tuple(names)), *([k[i] for k in wanted] for i in range(len(names)))
                )
            except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # As SQLAlchemy's errors would be: the runner retries (a generation retired meanwhile, say).
                raise StoreUnavailableError(f"the rows of {physical.name} could not be read: {exc}") from exc
            for record in records:
                values = dict(record.items())
                position = values.pop("last_position")
                found[tuple(values[n] for n in names)] = (values, int(position))
            return found
        if conn.dialect.name == "postgresql" and wanted:
            # One array per key column, joined: one statement and one plan for any number of keys (a
            # long row-value IN list is planned badly and costs most of a batch).
            arrays = [
                sa.bindparam(f"k{i}", [k[i] for k in wanted], type_=postgresql.ARRAY(c.type))
                for i, c in enumerate(key_columns)
            ]
            wanted_keys = (
                sa.func.unnest(*arrays)
                .table_valued(*(f"k{i}" for i in range(len(names))))
                .render_derived(name="wanted")
            )
            query = sa.select(physical).join(
                wanted_keys, sa.and_(*(c == wanted_keys.c[f"k{i}"] for i, c in enumerate(key_columns)))
            )
            for row in (await conn.execute(query)).mappings():
                values = {k: v for k, v in row.items() if k != "last_position"}
                found[tuple(values[n] for n in names)] = (values, int(row["last_position"]))
            return found
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            condition = (
                key_columns[0].in_([k[0] for k in chunk])
                if len(key_columns) == 1
                else sa.tuple_(*key_columns).in_(chunk)
            )
            for row in (await conn.execute(sa.select(physical).where(condition))).mappings():
                values = {k: v for k, v in row.items() if k != "last_position"}
                found[tuple(values[n] for n in names)] = (values, int(row["last_position"]))
        return found

    async def write(
        self,
        conn: AsyncConnection,
        puts: Mapping[tuple[str, RowKey], tuple[dict[str, Any], int]],
        removes: Mapping[tuple[str, RowKey], int],
    ) -> None:
        """Upsert and delete rows, each only where the stored row is older than the change's position."""
        by_table: dict[str, list[dict[str, Any]]] = {}
        for (table, _key), (row, position) in puts.items():
            by_table.setdefault(table, []).append({**row, "last_position": position})
        for table, rows in by_table.items():
            if conn.dialect.name == "postgresql":
                doc = self._json_rows(table, rows)
                if doc is not None:
                    await conn.execute(self._pg_json_upsert(table), {"rows": doc})
                else:
                    await conn.execute(self._pg_upsert(table, rows))
            else:
                await conn.execute(self._upsert(conn, table), rows)
        deletes: dict[str, list[dict[str, Any]]] = {}
        for (table, key), position in removes.items():
            values = {f"k_{n}": v for n, v in zip(self._keys[table], key, strict=True)}
            deletes.setdefault(table, []).append({**values, "p": position})
        for table, params in deletes.items():
            physical = self.tables[table]
            condition = sa.and_(
                *(physical.c[n] == sa.bindparam(f"k_{n}") for n in self._keys[table]),
                physical.c.last_position < sa.bindparam("p"),
            )
            await conn.execute(physical.delete().where(condition), params)

    def _json_rows(self, table: str, rows: list[dict[str, Any]]) -> str | None:
        """The rows as one JSON array, when every column's type and every value have an exact JSON form (else
        None: the arrays are used).

        One text parameter instead of one array per column: asyncpg checks every element of an array
        parameter against collections.abc types, ~4 µs per row of a 13-column table, most of the write's
        cost in the projector's process (bench/keepup.py); PostgreSQL parses the JSON for about as much
        as the arrays.
        """
        physical = self.tables[table]
        if not _as_json(physical):
            return None
        integers = _integer_columns(physical)
        if integers and any(type(row.get(name)) is bool for row in rows for name in integers):
            return None  # asyncpg writes True as 1 into an integer column; PostgreSQL's json refuses true there
        try:
            doc = orjson.dumps(rows, option=orjson.OPT_NON_STR_KEYS)  # keys read back are quoted_name, a str
        except TypeError:  # a Decimal, a date, an integer past 64 bits: not exactly JSON
            return None
        if b"\\u0000" in doc:  # a NUL (or those six characters in a text): the arrays, as before
            return None
        return doc.decode()

    def _pg_json_upsert(self, table: str) -> Any:
        physical = self.tables[table]
        found = _json_statements.get(physical.name)
        if found is None:
            keys = self._keys[table]
            quoted = [f'"{c.name}"' for c in physical.columns]
            key_list = ", ".join(f'"{k}"' for k in keys)
            updates = ", ".join(f"{q} = excluded.{q}" for c, q in zip(physical.columns, quoted, strict=True)
                                if c.name not in keys)  # fmt: skip
            found = sa.text(
                f'INSERT INTO "{physical.name}" ({", ".join(quoted)}) '
                f"SELECT {', '.join(quoted)} "
                f'FROM json_populate_recordset(NULL::"{physical.name}", CAST(:rows AS json)) '
                f"ON CONFLICT ({key_list}) DO UPDATE SET {updates} "
                f'WHERE "{physical.name}".last_position < excluded.last_position'
            )
            if len(_json_statements) >= _MAX_BUILT:
                _json_statements.clear()
            _json_statements[physical.name] = found
        return found

    def _pg_upsert(self, table: str, rows: list[dict[str, Any]]) -> Any:
        """All rows in one statement: one array per column, unnested (not a statement per 1,000 rows)."""
        physical = self.tables[table]
        names = [c.name for c in physical.columns]
        arrays = [
            sa.bindparam(f"a_{name}", [row.get(name) for row in rows], type_=postgresql.ARRAY(physical.c[name].type))
            for name in names
        ]
        source = sa.select(sa.func.unnest(*arrays).table_valued(*names).render_derived(name="incoming"))
        insert = postgresql.insert(physical).from_select(names, source)
        keys = self._keys[table]
        return insert.on_conflict_do_update(
            index_elements=keys,
            set_={name: insert.excluded[name] for name in names if name not in keys},
            where=physical.c.last_position < insert.excluded.last_position,
        )

    def _upsert(self, conn: AsyncConnection, table: str) -> Any:
        physical = self.tables[table]
        insert: Any = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(physical)
        keys = self._keys[table]
        return insert.on_conflict_do_update(
            index_elements=keys,
            set_={c.name: insert.excluded[c.name] for c in physical.columns if c.name not in keys},
            # The per-row guard: a replayed (or re-delivered) older event changes nothing.
            where=physical.c.last_position < insert.excluded.last_position,
        )

    async def rows(self, conn: AsyncConnection, table: str) -> list[dict[str, Any]]:
        """Every row of a table in key order (tests and comparisons), without ``last_position``."""
        physical = self.tables[table]
        query = sa.select(physical).order_by(*(physical.c[n] for n in self._keys[table]))
        return [
            {k: v for k, v in row.items() if k != "last_position"} for row in (await conn.execute(query)).mappings()
        ]


#: Column types whose every value has one exact JSON form (not floats: NaN; not numerics, dates, bytes).
_JSON_TYPES = (sa.Text, sa.String, sa.Integer, sa.BigInteger, sa.SmallInteger, sa.Boolean)
_json_statements: dict[str, Any] = {}


@functools.lru_cache(maxsize=_MAX_BUILT)
def _as_json(physical: sa.Table) -> bool:
    """Whether every column of the table may travel as JSON."""
    return all(type(c.type) in _JSON_TYPES for c in physical.columns)


@functools.lru_cache(maxsize=_MAX_BUILT)
def _load_sql(physical: sa.Table, keys: tuple[str, ...]) -> str:
    """The rows of these keys, given one array per key column (unnested and joined: one plan for any number)."""
    arrays = ", ".join(f"${n + 1}::{_PG_ARRAY[type(physical.c[k].type)]}" for n, k in enumerate(keys))
    wanted = ", ".join(f"k{n}" for n in range(len(keys)))
    joined = " AND ".join(f'v."{k}" = w.k{n}' for n, k in enumerate(keys))
    return f'SELECT v.* FROM "{physical.name}" AS v JOIN unnest({arrays}) AS w({wanted}) ON {joined}'


#: The PostgreSQL array type of each column type a key may have on the driver path (``_as_json``'s types).
_PG_ARRAY: dict[type[Any], str] = {
    sa.Text: "text[]", sa.String: "text[]", sa.Integer: "int4[]", sa.BigInteger: "int8[]", sa.SmallInteger: "int2[]",
    sa.Boolean: "bool[]",
}  # fmt: skip


@functools.lru_cache(maxsize=_MAX_BUILT)
def _integer_columns(physical: sa.Table) -> tuple[str, ...]:
    return tuple(c.name for c in physical.columns if isinstance(c.type, sa.Integer))


async def open_dead_letter_streams(conn: AsyncConnection, consumer: str) -> dict[tuple[str, str], int]:
    """(tenant, stream) -> the first parked position, for streams held behind an unresolved dead letter."""
    rows = await conn.execute(
        sa.select(dead_letters.c.tenant, dead_letters.c.stream, sa.func.min(dead_letters.c.position))
        .where(dead_letters.c.consumer == consumer, dead_letters.c.resolved_us.is_(None))
        .group_by(dead_letters.c.tenant, dead_letters.c.stream)
    )
    return {(tenant, stream): int(position) for tenant, stream, position in rows}


async def kafka_offsets(conn: AsyncConnection, consumer: str, topic: str) -> dict[int, tuple[int, int, int]]:
    """partition -> (next_offset, last_position, highwater) of a Kafka consumer."""
    rows = await conn.execute(
        sa.select(offsets.c.partition, offsets.c.next_offset, offsets.c.last_position, offsets.c.highwater).where(
            offsets.c.consumer == consumer, offsets.c.topic == topic
        )
    )
    return {int(p): (int(n), int(last), int(h)) for p, n, last, h in rows}


__all__ = [
    "ACTIVE",
    "BUILDING",
    "RETIRED",
    "Generation",
    "ViewStore",
    "active_generation",
    "create_generation",
    "ensure_active",
    "list_generations",
    "migrate_runtime",
    "segment_of",
]
