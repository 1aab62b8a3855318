"""The relay (log -> Kafka) and projectors fed by a Kafka consumer group.

The relay publishes the log in position order, keyed by stream, and advances its checkpoint only
after Kafka acknowledged every record of the batch: after a crash it re-sends from its checkpoint
(duplicates, never gaps). Projectors skip those duplicates by position: each partition's offsets row
keeps the highest log position applied from it, committed with the view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from proficio_events import EventLog, StoredEvent

from . import _wire
from ._apply import Applier
from ._kafka import Batch, ConsumerThread, ensure_topic, make_producer
from ._leases import LeaseKeeper
from ._model import Projection
from ._runtime import RETRYABLE, ActiveFollower, RunnerSettings, _sleep, wait_for_events_or_stop
from ._schema import offsets
from ._store import Generation, active_generation, kafka_offsets, now_us

logger = logging.getLogger("proficio.stream")


def _dropped(future: asyncio.Future[Any] | None) -> None:
    """Cancel a read-ahead, and retrieve its outcome so that a failure in it is not reported unretrieved."""
    if future is None:
        return
    future.cancel()
    if future.done() and not future.cancelled():
        future.exception()


def relay_consumer(topic: str) -> str:
    return f"relay:{topic}"


class Relay:
    """Publishes the log to one Kafka topic. Several relays may run: one holds the lease, others wait."""

    def __init__(
        self,
        log: EventLog,
        bootstrap: str,
        topic: str,
        *,
        partitions: int = 6,
        replication: int = 1,
        batch_size: int = 5000,
        settings: RunnerSettings | None = None,
    ) -> None:
        self.log = log
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.replication = replication
        self.batch_size = batch_size
        self.settings = settings or RunnerSettings()
        self.consumer = relay_consumer(topic)
        self.published = 0

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        # The producer is used from this one thread only (its own IO thread aside).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-producer") as thread:
            producer: Any = None
            keeper = LeaseKeeper(
                self.log, self.consumer, 1, self.settings.owner, ttl=self.settings.lease_ttl, fair=False
            )
            renew_at = 0.0
            # The next batch, read while the current one is published; valid only while `ahead_of` is the
            # checkpoint (any failure drops it and reads again from the checkpoint).
            upcoming: asyncio.Future[list[StoredEvent]] | None = None
            ahead_of = -1
            try:
                while not stop.is_set():
                    try:
                        if producer is None:
                            await loop.run_in_executor(
                                thread, ensure_topic, self.bootstrap, self.topic, self.partitions, self.replication
                            )
                            producer = await loop.run_in_executor(thread, make_producer, self.bootstrap)
                        if loop.time() >= renew_at:
                            await keeper.refresh()
                            renew_at = loop.time() + self.settings.lease_ttl / 3
                        if not keeper.owned:
                            await _sleep(stop, self.settings.lease_ttl / 3)
                            continue
                        position = await self.log.get_checkpoint(self.consumer)
                        if upcoming is not None and ahead_of == position:
                            batch = await upcoming
                        else:
                            _dropped(upcoming)
                            batch = await self.log.read_after(position, self.batch_size)
                        upcoming = None
                        if not batch:
                            await wait_for_events_or_stop(self.log, stop, position, self.settings.idle_timeout)
                            continue
                        publishing = loop.run_in_executor(thread, self._publish, producer, batch)
                        upcoming = asyncio.ensure_future(self.log.read_after(batch[-1].position, self.batch_size))
                        ahead_of = batch[-1].position
                        await publishing
                        async with self.log.transaction() as conn:
                            if not await keeper.holds(conn, 0):
                                continue  # lost the lease while publishing: the new holder re-sends
                            # Only after Kafka acknowledged every record of the batch.
                            await self.log.save_checkpoint(self.consumer, batch[-1].position, conn=conn)
                        self.published += len(batch)
                    except RETRYABLE as exc:
                        _dropped(upcoming)
                        upcoming = None
                        logger.warning("relay: the store failed (%s); retrying", exc)
                        await _sleep(stop, self.settings.retry_delay)
                    except Exception as exc:  # kafka-python's errors: the broker is away, a timeout
                        _dropped(upcoming)
                        upcoming = None
                        logger.warning("relay: Kafka failed (%s); re-sending from the checkpoint", exc)
                        await _sleep(stop, self.settings.retry_delay)
            finally:
                _dropped(upcoming)
                if producer is not None:
                    await loop.run_in_executor(thread, lambda: producer.close(timeout=10))
                with contextlib.suppress(*RETRYABLE):
                    await keeper.release()

    def _publish(self, producer: Any, batch: list[StoredEvent]) -> None:
        partitions = len(producer.partitions_for(self.topic))
        futures = []
        for event in batch:
            key = _wire.record_key(event)
            futures.append(
                producer.send(
                    self.topic,
                    key=key,
                    value=_wire.encode(event),
                    partition=_wire.partition_of(key, partitions),
                    headers=[("position", str(event.position).encode())],
                )
            )
        producer.flush(timeout=60)
        for future in futures:
            future.get(timeout=60)  # raises if Kafka did not take the record: the checkpoint stays


class KafkaProjector(ActiveFollower):
    """Keeps one projection's active generation up to date from a Kafka consumer group."""

    def __init__(
        self,
        log: EventLog,
        projection: Projection,
        bootstrap: str,
        topic: str,
        settings: RunnerSettings | None = None,
        *,
        session_timeout_ms: int = 10_000,
    ) -> None:
        self.log = log
        self.session_timeout_ms = session_timeout_ms
        self.projection = projection
        self.bootstrap = bootstrap
        self.topic = topic
        self.settings = settings or RunnerSettings()
        self.applied = 0
        self._consumer: ConsumerThread | None = None

    @property
    def assigned(self) -> set[int]:
        """The partitions this projector's consumer holds now."""
        return set(self._consumer.assigned) if self._consumer is not None else set()

    async def _serve(self, generation: Generation, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Batch] = asyncio.Queue(maxsize=4)
        applier = Applier(self.projection, generation)

        async def starts(partitions: list[int]) -> dict[int, int | None]:
            async with self.log.engine.connect() as conn:
                known = await kafka_offsets(conn, generation.consumer, self.topic)
            return {p: known[p][0] if p in known else None for p in partitions}

        # One group per topic and generation: its members share the topic's partitions.
        group = f"{self.topic}:{generation.consumer}"
        thread = ConsumerThread(
            self.bootstrap, self.topic, group, loop, queue, starts, session_timeout_ms=self.session_timeout_ms
        )
        thread.start()
        self._consumer = thread
        check_at = loop.time() + self.settings.lease_ttl / 3
        try:
            while not stop.is_set():
                if thread.failed is not None or not thread.alive:
                    raise RuntimeError(f"the Kafka consumer of {generation.consumer} stopped: {thread.failed}")
                if loop.time() >= check_at:
                    check_at = loop.time() + self.settings.lease_ttl / 3
                    async with self.log.engine.connect() as conn:
                        if await active_generation(conn, self.projection.name) != generation:
                            return  # a rebuild swapped in a new generation
                try:
                    batch = await asyncio.wait_for(queue.get(), timeout=0.5)
                except TimeoutError:
                    continue
                while not queue.empty():  # behind: fold what has arrived in one transaction
                    batch = batch.merged(queue.get_nowait())
                while True:
                    try:
                        self.applied += await self._commit(applier, generation, batch)
                        break
                    except IntegrityError:
                        continue  # another member created the same offsets row first: read it and filter again
                    except RETRYABLE as exc:
                        logger.warning("%s: the store failed (%s); retrying the batch", generation.consumer, exc)
                        await _sleep(stop, self.settings.retry_delay)
                        if stop.is_set() or await self._swapped(generation):
                            return  # a rebuild retired this generation (and dropped its tables)
        finally:
            thread.stop()
            await asyncio.to_thread(thread.join, 30)

    async def _swapped(self, generation: Generation) -> bool:
        with contextlib.suppress(*RETRYABLE):
            async with self.log.engine.connect() as conn:
                return await active_generation(conn, self.projection.name) != generation
        return False

    async def _commit(self, applier: Applier, generation: Generation, batch: Batch) -> int:
        """Fold a poll's records and move the partitions' offsets, in one transaction."""
        async with self.log.transaction() as conn:
            query = sa.select(offsets).where(
                offsets.c.consumer == generation.consumer,
                offsets.c.topic == self.topic,
                offsets.c.partition.in_(list(batch.records)),
            )
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()  # a member that lost the partition meanwhile waits, then skips
            stored = {int(r.partition): r for r in await conn.execute(query)}
            folded: list[StoredEvent] = []
            moved: list[dict[str, Any]] = []
            for partition, records in batch.records.items():
                row = stored.get(partition)
                next_offset = int(row.next_offset) if row is not None else 0
                last_position = int(row.last_position) if row is not None else generation.built_through
                start = next_offset
                for record in records:
                    if record.offset < next_offset:
                        continue  # committed already (by us before a restart, or by the member before us)
                    next_offset = record.offset + 1
                    event = _wire.decode(record.value)
                    if event.position <= last_position:
                        continue  # the relay re-sent it after a crash, or the rebuild covered it
                    last_position = event.position
                    folded.append(event)
                if next_offset == start and row is not None:
                    continue
                moved.append(
                    {
                        "consumer": generation.consumer,
                        "topic": self.topic,
                        "partition": partition,
                        "next_offset": next_offset,
                        "last_position": last_position,
                        "highwater": batch.highwater.get(partition, next_offset),
                        "updated_us": now_us(),
                    }
                )
            folded.sort(key=lambda e: e.position)
            await applier.apply(conn, folded)
            if moved:
                insert: Any = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(offsets)
                keys = ["consumer", "topic", "partition"]
                await conn.execute(
                    insert.on_conflict_do_update(
                        index_elements=keys,
                        set_={
                            c: insert.excluded[c] for c in ("next_offset", "last_position", "highwater", "updated_us")
                        },
                        where=offsets.c.next_offset < insert.excluded.next_offset,  # offsets only move forward
                    ),
                    moved,
                )
        return len(folded)
