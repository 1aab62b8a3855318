"""The Kafka test harness against its real broker: kafka-python round trips, per-key order, a restart.

Clients are built the way the relay and the projectors will build them (design doc §5, §6, §9): an
idempotent producer with acks='all' keyed by stream id, and consumers in a group, without auto-commit,
each owned by exactly one thread from construction to close().
"""

from __future__ import annotations

import time
import uuid
import warnings
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tests.support.kafka import NET_BACKEND, KafkaBroker

with warnings.catch_warnings():
    # kafka-python 3.0 reads its protocol schemas with importlib.resources.read_text(), which calls
    # open_text(); both are deprecated on Python 3.11 and 3.12 (and warn while `kafka` is imported).
    warnings.filterwarnings("ignore", r"(read|open)_text is deprecated", DeprecationWarning)
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # type: ignore[import-untyped]

PARTITIONS = 3
KEYS = [f"district-7/learner:{n}" for n in range(12)]


@dataclass(frozen=True)
class Received:
    partition: int
    offset: int
    key: str
    seq: int


def _options(broker: KafkaBroker) -> dict[str, Any]:
    # A restarted broker is found again within a second rather than after the default 30 s backoff.
    return {"bootstrap_servers": broker.bootstrap_servers, "reconnect_backoff_max_ms": 1000, **NET_BACKEND}


def _topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _producer(broker: KafkaBroker) -> Any:
    return KafkaProducer(enable_idempotence=True, acks="all", linger_ms=5, **_options(broker))


def _send(producer: Any, topic: str, seqs: range) -> dict[tuple[str, int], tuple[int, int]]:
    """Send every key once per seq, keys interleaved; returns (key, seq) -> (partition, offset) as acked."""
    futures = [
        (key, seq, producer.send(topic, key=key.encode(), value=str(seq).encode())) for seq in seqs for key in KEYS
    ]
    producer.flush(timeout=30)
    acked: dict[tuple[str, int], tuple[int, int]] = {}
    for key, seq, future in futures:
        metadata = future.get(timeout=30)
        acked[key, seq] = (metadata.partition, metadata.offset)
    return acked


def _consume(broker: KafkaBroker, topic: str, group: str, count: int, timeout: float = 30.0) -> list[Received]:
    """Read ``count`` records as member of ``group``, commit, and close, all on one thread of its own."""

    def run() -> list[Received]:
        consumer = KafkaConsumer(
            topic, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest", **_options(broker)
        )
        try:
            received: list[Received] = []
            deadline = time.monotonic() + timeout
            while len(received) < count and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500).values():
                    received.extend(Received(r.partition, r.offset, r.key.decode(), int(r.value)) for r in records)
            # Anything beyond `count` (a duplicate, say) would arrive in this poll and fail the caller's checks.
            for records in consumer.poll(timeout_ms=300).values():
                received.extend(Received(r.partition, r.offset, r.key.decode(), int(r.value)) for r in records)
            consumer.commit()
            ends = consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
            for tp, end in ends.items():
                assert consumer.committed(tp) == end, f"committed offset of {tp} is not its end offset {end}"
            return received
        finally:
            consumer.close()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"consumer-{group}") as owner:
        return owner.submit(run).result()


def _check(received: list[Received], acked: dict[tuple[str, int], tuple[int, int]]) -> None:
    """Every acked record arrived exactly once, where the producer was told, each key in one partition in order."""
    assert len(received) == len(acked), f"{len(received)} records read, {len(acked)} sent"
    assert {(r.key, r.seq): (r.partition, r.offset) for r in received} == acked
    by_key: dict[str, list[Received]] = defaultdict(list)
    for record in sorted(received, key=lambda r: (r.partition, r.offset)):
        by_key[record.key].append(record)
    for key, records in by_key.items():
        assert len({r.partition for r in records}) == 1, f"{key} is spread over partitions"
        seqs = [r.seq for r in records]
        assert seqs == sorted(seqs), f"{key} out of order in its partition: {seqs}"


def test_keyed_round_trip_keeps_per_key_order(kafka: KafkaBroker) -> None:
    topic = _topic("harness-roundtrip")
    kafka.create_topic(topic, PARTITIONS)
    producer = _producer(kafka)
    try:
        acked = _send(producer, topic, range(40))
    finally:
        producer.close(timeout=10)
    assert {partition for partition, _ in acked.values()} == set(range(PARTITIONS))

    received = _consume(kafka, topic, _topic("group"), len(acked))

    _check(received, acked)


def test_broker_restart_keeps_records_and_committed_offsets(kafka: KafkaBroker) -> None:
    topic = _topic("harness-restart")
    group = _topic("group")
    kafka.create_topic(topic, PARTITIONS)
    producer = _producer(kafka)  # lives through the restart
    try:
        before = _send(producer, topic, range(10))
        _check(_consume(kafka, topic, group, len(before)), before)

        kafka.stop()
        assert not kafka.running
        kafka.start()
        after = _send(producer, topic, range(10, 20))
    finally:
        producer.close(timeout=10)
        if not kafka.running:  # leave the session's broker running for the tests after this one
            kafka.start()

    # The group resumes where it committed before the restart: exactly the new records.
    _check(_consume(kafka, topic, group, len(after)), after)
    # The log directories survived: a new group reads everything, each key still in order across the restart.
    _check(_consume(kafka, topic, _topic("group"), len(before) + len(after)), before | after)
