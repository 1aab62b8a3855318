"""The log contract every backend fulfils (see ``tests/events/contract.py``)."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ._envelope import AppendResult, NewEvent, StoredEvent, StreamHead, VerifyReport

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from ._checkpoints import Checkpoint, Signer

#: Work done inside the append transaction with the newly stored events (inline projections,
#: such as the statement query tables). If it raises, nothing of the batch is written.
InlineHandler = Callable[[AsyncConnection, Sequence[StoredEvent]], Awaitable[None]]
#: The batch a decided append stores, chosen from the heads of the streams it named (``append_decided``).
Decide = Callable[[Mapping[str, StreamHead]], Sequence[NewEvent]]


@dataclass(frozen=True)
class GroupRead:
    """A read an inline handler makes of its own tables before it writes, which the log may run inside the group
    commit's own read, under the write lock (PostgreSQL: in the same round trip, one less per group). The rows are
    left in the append transaction for the handler (``group_read_rows``); where they are not (another backend, a
    rebuild, a handler run outside a group), the handler reads for itself, so the result must be the same.

    ``sql`` (PostgreSQL) reads with ``$1`` the tenant and ``$2``, ``$3`` two text arrays that ``arguments`` makes
    from a tenant's new events in the group (before their append: every event a handler may be given, perhaps
    more). Its rows have the columns of the group read (``GROUP_READ_TYPES``), the first one of ``kinds``.
    """

    name: str
    sql: str
    kinds: frozenset[int]
    arguments: Callable[[Sequence[NewEvent]], tuple[list[str], list[str]]]


#: The column types of a group read's rows (PostgreSQL): a kind, then the events table's columns.
GROUP_READ_TYPES = (
    "int", "bigint", "text", "text", "int", "text", "smallint", "bigint", "text", "bytea", "bytea", "bytea",
    "text", "bytea", "bytea",
)  # fmt: skip
#: Kinds below this belong to the log's own read.
GROUP_READ_FIRST_KIND = 100


@dataclass(frozen=True)
class GroupReadResult:
    """What a ``GroupRead`` found in this append transaction, and for which arguments."""

    arguments: tuple[list[str], list[str]]
    rows: list[Sequence[Any]]


_GROUP_READ_ROWS = "proficio_group_read_rows"


def group_read_rows(conn: AsyncConnection, read: GroupRead, tenant: str) -> GroupReadResult | None:
    """The rows ``read`` found for ``tenant`` in the group read of the append transaction on ``conn``, if it ran."""
    found: dict[tuple[str, str], GroupReadResult] | None = conn.info.get(_GROUP_READ_ROWS)
    return None if found is None else found.get((read.name, tenant))


class EventLog(abc.ABC):
    """An append-only, gap-free, tamper-evident log of events, partitioned by tenant.

    Positions increase in commit order; each batch gets contiguous positions; a reader that asks
    for events after position N never misses one that commits later.
    """

    engine: AsyncEngine

    def add_group_read(self, read: GroupRead) -> None:
        """Run ``read`` in every group commit's read from now on, where the backend can (see ``GroupRead``)."""
        del read  # a backend without a group read leaves the reading to the handler

    @abc.abstractmethod
    async def append(
        self, tenant: str, events: Sequence[NewEvent], *, inline: InlineHandler | None = None
    ) -> AppendResult:
        """Append a batch atomically: every event or none."""

    async def append_decided(
        self,
        tenant: str,
        streams: Collection[str],
        decide: Decide,
        *,
        seal_for: Collection[str] = (),
        learner_of: str | None = None,
        inline: InlineHandler | None = None,
    ) -> AppendResult:
        """Append the batch ``decide`` chooses from the current heads of ``streams``, read under the write lock.

        For a write that depends on what a stream holds now (a document PUT with If-Match, say): no read before
        the append and no race to lose, since nothing can append to those streams between the read and the
        insert. ``decide`` runs in the append transaction with a head for every named stream (version 0 if the
        stream is empty) and returns the events to store, only on those streams, without uniqueness keys and
        sealing private data only for learners named in ``seal_for``; an empty batch stores nothing. Where
        ``seal_for`` names ``PENDING_LEARNER``, ``learner_of`` is her directory digest (``NewEvent.learner_of``):
        her id is put in place in the batch once the decision holds (created then if she has none, with the data
        keys the batch is sealed under). What it raises is raised here, and nothing of it is stored: no event,
        no learner id, no key. It must be quick and must not await: on backends
        with group commit it runs inside another request's transaction too.
        """
        raise NotImplementedError(f"{type(self).__name__} does not decide appends under its write lock")

    @abc.abstractmethod
    async def read_after(self, position: int, limit: int = 1000, *, tenant: str | None = None) -> list[StoredEvent]:
        """Events with a position greater than ``position``, in log order, at most ``limit``."""

    async def scan_after(
        self, position: int, limit: int, event_types: Collection[str] | None = None
    ) -> tuple[list[StoredEvent], int]:
        """The events of ``event_types`` (None: every type) after ``position``, in log order, at most ``limit``,
        and the position the scan covered: every event up to it was either returned or of another type.

        A reader interested in few types (a projection) moves its checkpoint to the covered position
        without fetching the events it would skip.
        """
        batch = await self.read_after(position, limit)
        covered = batch[-1].position if batch else position
        if event_types is not None:
            batch = [event for event in batch if event.event_type in event_types]
        return batch, covered

    @abc.abstractmethod
    async def read_stream(
        self, tenant: str, stream: str, *, after_version: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        """One stream's events in order."""

    @abc.abstractmethod
    async def get_by_key(self, tenant: str, key: str) -> StoredEvent | None:
        """The event stored under a uniqueness key, if any."""

    async def get_by_keys(self, tenant: str, keys: Sequence[str]) -> list[StoredEvent]:
        """The events stored under these keys (those that exist), in log order."""
        found = [event for key in dict.fromkeys(keys) if (event := await self.get_by_key(tenant, key)) is not None]
        return sorted(found, key=lambda e: e.position)

    @abc.abstractmethod
    async def max_position(self) -> int:
        """The position of the newest committed event (0 for an empty log)."""

    @abc.abstractmethod
    async def head(self) -> tuple[int, int]:
        """The position and recorded time (µs) of the newest committed event; (0, 0) for an empty log."""

    @abc.abstractmethod
    async def wait_for_events(self, after: int, timeout: float) -> bool:
        """Return True as soon as an event past ``after`` is committed, False after ``timeout`` s."""

    async def follow(
        self, after: int, *, batch_size: int = 1000, idle_timeout: float = 1.0
    ) -> AsyncIterator[list[StoredEvent]]:
        """Yield batches of events after ``after`` forever, waiting for new ones when caught up."""
        position = after
        while True:
            batch = await self.read_after(position, batch_size)
            if batch:
                position = batch[-1].position
                yield batch
                continue
            await self.wait_for_events(position, idle_timeout)

    @abc.abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction on the log's database, for a consumer's view rows and checkpoint."""

    @abc.abstractmethod
    async def get_checkpoint(self, consumer: str, partition: int = 0) -> int:
        """The last position ``consumer`` has fully processed (0 when it never ran)."""

    @abc.abstractmethod
    async def save_checkpoint(
        self, consumer: str, position: int, partition: int | Collection[int] = 0, *, conn: AsyncConnection | None = None
    ) -> None:
        """Record progress (of one partition, or of several in one statement); with ``conn``, inside that transaction
        (with the consumer's view change)."""

    @abc.abstractmethod
    async def verify(self, tenant: str | None = None, *, public_key: Ed25519PublicKey | None = None) -> VerifyReport:
        """Walk the hash chain(s) and report the first event altered, removed or reordered.

        Every stored checkpoint (of ``tenant``, or all) is held against the chain: the event at its
        position must still carry its hash. With ``public_key``, the signatures of the checkpoints that
        key made are checked too (a failing one is reported as ``forged``).
        """

    @abc.abstractmethod
    async def tenants(self) -> list[str]:
        """Every tenant with at least one event, in order."""

    @abc.abstractmethod
    async def checkpoints(
        self, tenant: str | None = None, *, after: int = 0, through: int | None = None
    ) -> list[Checkpoint]:
        """Stored checkpoints (of ``tenant``, or all) with a position in (after, through], by position."""

    @abc.abstractmethod
    async def record_checkpoint(self, tenant: str, signer: Signer, *, position: int | None = None) -> Checkpoint | None:
        """Sign and store a checkpoint of ``tenant``'s chain at ``position`` (default: its newest event).

        The chain up to there is verified first, from the signer's newest checkpoint on, so a tampered
        chain is never signed (``LogTamperedError``). Returns the checkpoint already stored at that
        position by the same key if there is one, None if the tenant has no events.
        """

    @abc.abstractmethod
    async def migrate_package(self, location: Path, version_table: str) -> None:
        """Apply a package's Alembic migrations to the log's database, where its view tables live."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and listeners."""

    async def fetch_row(self, sql: str, *args: Any) -> Sequence[Any] | None:
        """The first row of one read-only query (``$1``-style parameters), outside any transaction; None if none.

        PostgreSQL only: the hot reads of request handlers (a document by its stream, say), prepared once on the
        driver connection, without SQLAlchemy Core or a BEGIN and ROLLBACK around them.
        """
        rows = await self.fetch_rows(sql, *args)
        return rows[0] if rows else None

    async def fetch_rows(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        """Every row of one read-only query, as ``fetch_row`` reads (PostgreSQL only)."""
        async with self.engine.connect() as conn:
            if conn.dialect.name != "postgresql":
                raise NotImplementedError("fetch_rows takes PostgreSQL's SQL; use SQLAlchemy on other backends")
            raw = await conn.get_raw_connection()
            rows: list[Sequence[Any]] = await raw.driver_connection.fetch(sql, *args)  # type: ignore[union-attr]
            return rows

    async def __aenter__(self) -> EventLog:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
