"""Reading a whole Kafka topic from a test, on a thread that owns its consumer."""

from __future__ import annotations

import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from proficio_events import StoredEvent
from proficio_projector._kafka import CLIENT_OPTIONS
from proficio_projector._wire import decode

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", r"(read|open)_text is deprecated", DeprecationWarning)
    from kafka import KafkaConsumer, TopicPartition


@dataclass(frozen=True)
class Published:
    partition: int
    offset: int
    key: str
    event: StoredEvent


def read_topic(bootstrap: str, topic: str, at_least: int, *, timeout: float = 60.0) -> list[Published]:
    """Every record of ``topic`` (waiting until there are ``at_least``), in partition and offset order."""

    def run() -> list[Published]:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **CLIENT_OPTIONS)
        try:
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            found: list[Published] = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                polled = consumer.poll(timeout_ms=300)
                for records in polled.values():
                    found.extend(Published(r.partition, r.offset, r.key.decode(), decode(r.value)) for r in records)
                ends = consumer.end_offsets(partitions)
                if len(found) >= at_least and all(consumer.position(tp) >= ends[tp] for tp in partitions):
                    break
            return sorted(found, key=lambda p: (p.partition, p.offset))
        finally:
            consumer.close()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="topic-reader") as owner:
        return owner.submit(run).result()
