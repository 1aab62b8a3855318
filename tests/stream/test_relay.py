"""The relay and Kafka-fed projectors in this process, against the real broker, on SQLite and PostgreSQL logs."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable

from proficio_events import EventLog
from proficio_projector import (
    KafkaProjector,
    LearnerActivity,
    Relay,
    RunnerSettings,
    active_generation,
    build,
    relay_consumer,
    status,
)
from proficio_projector._wire import record_key
from tests.projector.support import FAST, append_statements, replayed_rows, running, view_rows, whole_log
from tests.stream.support import read_topic
from tests.support.kafka import KafkaBroker


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.1)


def relay(log: EventLog, kafka: KafkaBroker, topic: str, owner: str = "relay-a") -> Relay:
    return Relay(log, kafka.bootstrap_servers, topic, partitions=4, batch_size=400,
                 settings=RunnerSettings(owner=owner, **FAST))  # fmt: skip


async def relayed_all(log: EventLog, topic: str) -> bool:
    return await log.get_checkpoint(relay_consumer(topic)) == await log.max_position()


async def test_relay_publishes_every_event_once_in_order_keyed_by_stream(
    log: EventLog, kafka: KafkaBroker, topic: str
) -> None:
    await append_statements(log, 1200, learners=25)
    async with running(relay(log, kafka, topic)):
        await eventually(lambda: relayed_all(log, topic), "the relay caught up")
        await append_statements(log, 300, learners=25, start=1200)  # while it runs
        await eventually(lambda: relayed_all(log, topic), "the relay caught up again")

    published = await asyncio.to_thread(read_topic, kafka.bootstrap_servers, topic, 1500)
    logged = await whole_log(log)
    assert [p.event.position for p in sorted(published, key=lambda p: p.event.position)] == list(range(1, 1501))
    assert {p.event.position: p.event for p in published} == {e.position: e for e in logged}  # every field
    partitions_of: dict[str, set[int]] = defaultdict(set)
    last_position: dict[int, int] = defaultdict(int)
    for record in published:  # partition and offset order
        assert record.key == record_key(record.event).decode()
        partitions_of[record.key].add(record.partition)
        assert record.event.position > last_position[record.partition], "a partition is out of log order"
        last_position[record.partition] = record.event.position
    assert all(len(found) == 1 for found in partitions_of.values())
    assert len({p for found in partitions_of.values() for p in found}) == 4


async def test_relay_resumes_from_its_checkpoint(log: EventLog, kafka: KafkaBroker, topic: str) -> None:
    await append_statements(log, 500)
    async with running(relay(log, kafka, topic)):
        await eventually(lambda: relayed_all(log, topic), "the first relay caught up")
    await append_statements(log, 250, start=500)
    async with running(relay(log, kafka, topic, owner="relay-b")):  # the first released its lease on stop
        await eventually(lambda: relayed_all(log, topic), "the second relay caught up")

    published = await asyncio.to_thread(read_topic, kafka.bootstrap_servers, topic, 750)
    assert sorted(p.event.position for p in published) == list(range(1, 751))


async def test_two_kafka_projectors_in_one_group_equal_a_replay(log: EventLog, kafka: KafkaBroker, topic: str) -> None:
    await append_statements(log, 100, learners=30)
    projectors = [
        KafkaProjector(
            log,
            LearnerActivity(),
            kafka.bootstrap_servers,
            topic,
            RunnerSettings(owner=f"projector-{n}", **FAST),
            session_timeout_ms=6000,
        )
        for n in range(2)
    ]

    async def views_match() -> bool:
        try:
            return await view_rows(log, LearnerActivity()) == await replayed_rows(log)
        except AssertionError:
            return False

    async def shared() -> bool:
        held = [projector.assigned for projector in projectors]
        return all(held) and sorted(p for found in held for p in found) == [0, 1, 2, 3]

    async with running(relay(log, kafka, topic), *projectors):
        await eventually(shared, "both members hold partitions")
        await append_statements(log, 700, learners=30, start=100)
        await eventually(views_match, "the Kafka-fed view equals a replay")
        await append_statements(log, 400, learners=30, start=800)
        await eventually(shared, "both members still hold partitions")
        await eventually(views_match, "the view equals a replay after more events")
        found = [s for s in await status(log, topic=topic) if s.name == "learner_activity"]
        await eventually(lambda: _lag_zero(log, topic), "status reports the projector caught up", timeout=20)
    assert sorted(found[0].kafka_partitions) == [0, 1, 2, 3]
    # At least once: two members that both take a partition before either has committed an offset for it
    # may both fold its first records; the per-row guard keeps the view exact (checked above).
    assert sum(projector.applied for projector in projectors) >= 1200
    assert all(projector.applied > 0 for projector in projectors), "the group did not share the partitions"


async def _lag_zero(log: EventLog, topic: str) -> bool:
    found = [s for s in await status(log, topic=topic) if s.name == "learner_activity"]
    return bool(found) and found[0].lag == 0


async def test_a_rebuild_swaps_under_running_kafka_projectors(log: EventLog, kafka: KafkaBroker, topic: str) -> None:
    """The new generation is built from the SQL log; Kafka members move to it and skip what it already holds."""
    await append_statements(log, 300, learners=12)
    projector = KafkaProjector(log, LearnerActivity(), kafka.bootstrap_servers, topic,
                               RunnerSettings(owner="projector", **FAST), session_timeout_ms=6000)  # fmt: skip

    async def views_match() -> bool:
        try:
            return await view_rows(log, LearnerActivity()) == await replayed_rows(log)
        except AssertionError:
            return False

    async with running(relay(log, kafka, topic), projector):
        await eventually(views_match, "the view equals a replay")
        generation = await build(log, LearnerActivity(), RunnerSettings(owner="rebuilder", **FAST))
        assert generation.generation == 2
        assert generation.built_through == 0  # as created; the swap records how far it was built
        await append_statements(log, 200, learners=12, start=300)
        await eventually(views_match, "the new generation, fed from Kafka after the swap, equals a replay")
        async with log.engine.connect() as conn:
            live = await active_generation(conn, "learner_activity")
        assert live is not None
        assert live.generation == 2
        assert live.built_through >= 300
    rows = await view_rows(log, LearnerActivity())
    assert sum(r["statements"] for r in rows) == 500
