"""What a projection is: a pure fold of log events into rows of its own view tables.

A projection names the rows an event needs (``reads``), and given those rows as they stand, says what
the event changes (``apply``): no I/O, no clock, no randomness, so replaying the log gives the same
views every time. The runtime (``_runtime``) owns everything else: loading rows, the per-row position
guard, the checkpoint in the same transaction, retries and dead letters.

Rows of a projection fed by several workers at once (Kafka partitions, SQL-log segments) must each be
written by the events of one stream only (a learner's stream, say): the per-row guard orders writes by
log position, which is only a total order within one stream's partition. Aggregates over many streams
are computed when read, or by a projection that runs unpartitioned (``partitioned=False``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa

from proficio_events import StoredEvent

#: A row's key: the values of its table's key columns, in order.
RowKey = tuple[Any, ...]
#: A row as the projection sees it: column name -> value (key columns included).
Row = Mapping[str, Any]


@dataclass(frozen=True)
class ViewIndex:
    """An index of a view table other than a btree over ``columns`` (which a plain sequence of names declares).

    ``using`` names PostgreSQL's access method; other databases get a plain index over the same columns.
    ``"hash"`` (one column, equality only) suits random keys such as statement ids: each insert touches a bucket
    page of an index a fraction of a btree's size. ``"brin"`` suits a column that grows with the table's
    inserts, such as ``last_position``: the index summarizes ranges of pages and an insert rarely changes it.
    """

    columns: tuple[str, ...]
    using: str = "btree"


@dataclass(frozen=True)
class ViewTable:
    """One table of a projection's view. ``key`` columns form its primary key; ``last_position`` is added.

    ``indexes``: each a sequence of column names (a btree) or a ``ViewIndex``."""

    name: str
    key: Sequence[sa.Column[Any]]
    values: Sequence[sa.Column[Any]]
    indexes: Sequence[Sequence[str] | ViewIndex] = ()

    @functools.cached_property
    def key_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.key)


@dataclass(frozen=True)
class RowRef:
    table: str
    key: RowKey


@dataclass(frozen=True)
class Put:
    """Create or replace the row ``key`` of ``table`` with ``values`` (the non-key columns)."""

    table: str
    key: RowKey
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Remove:
    table: str
    key: RowKey


Change = Put | Remove


class State(Protocol):
    """The rows an event asked for, as they stand before it (``None``: no such row)."""

    def get(self, table: str, key: RowKey) -> Row | None: ...


class Projection(Protocol):
    """A named, versioned pure fold. Change ``version`` whenever the code changes what it computes."""

    name: str
    version: int
    tables: Sequence[ViewTable]
    #: Event types it folds (others are skipped without calling it); None for every type.
    event_types: frozenset[str] | None
    #: Whether its rows are per stream, so that workers may share the log by stream (see the module doc).
    partitioned: bool

    def reads(self, event: StoredEvent) -> Iterable[RowRef]:
        """The rows ``apply`` will look at for this event."""
        ...

    def apply(self, state: State, event: StoredEvent) -> Sequence[Change]:
        """The changes this event makes, given the rows it reads. Must not touch anything else."""
        ...


@dataclass
class MemoryState:
    """Rows held in memory: the runtime's working set for a batch, and the whole view in tests."""

    rows: dict[str, dict[RowKey, dict[str, Any] | None]] = field(default_factory=dict)

    def get(self, table: str, key: RowKey) -> Row | None:
        return self.rows.get(table, {}).get(key)

    def has(self, table: str, key: RowKey) -> bool:
        return key in self.rows.get(table, {})

    def set(self, table: str, key: RowKey, row: dict[str, Any] | None) -> None:
        self.rows.setdefault(table, {})[key] = row

    def apply_changes(self, projection: Projection, changes: Sequence[Change]) -> None:
        for change in changes:
            table = next((t for t in projection.tables if t.name == change.table), None)
            if table is None:
                raise ValueError(f"{projection.name} changed a table it does not declare: {change.table!r}")
            if isinstance(change, Remove):
                self.set(change.table, change.key, None)
                continue
            row = dict(zip(table.key_names, change.key, strict=True))
            row.update(change.values)
            self.set(change.table, change.key, row)


def fold(projection: Projection, events: Iterable[StoredEvent], state: MemoryState | None = None) -> MemoryState:
    """Fold ``events`` into ``state`` in memory: the reference the runtime's views must equal."""
    state = state if state is not None else MemoryState()
    for event in events:
        if projection.event_types is None or event.event_type in projection.event_types:
            state.apply_changes(projection, projection.apply(state, event))
    return state
