"""kafka-python, the way Proficio uses it: the relay's producer and the projectors' consumers.

Every client is built with its network backend named (where the installed kafka-python has the
option) and each consumer is owned by one thread for its whole life (it is not thread-safe): the
thread polls and hands records to asyncio through a bounded queue; seeks happen on that thread, in
the rebalance listener, from the offsets kept with the view.
"""

from __future__ import annotations

import asyncio
import logging
import selectors
import threading
import warnings
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

with warnings.catch_warnings():
    # kafka-python 3.0 reads its protocol schemas with importlib.resources.read_text(), which calls
    # open_text(); both are deprecated on Python 3.11 and 3.12 (and warn while `kafka` is imported).
    warnings.filterwarnings("ignore", r"(read|open)_text is deprecated", DeprecationWarning)
    from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

logger = logging.getLogger("proficio.stream")

# The network backend, named explicitly: kafka-python 3.1 adds `net=` and would pick its experimental
# asyncio backend by itself for a client built inside a running event loop; 3.0.x has no `net` option
# (and refuses unknown ones), its one backend is the selector loop, and `selector` names the OS selector.
NET_BACKEND: dict[str, Any] = (
    {"net": "selector"} if "net" in KafkaConsumer.DEFAULT_CONFIG else {"selector": selectors.DefaultSelector}
)
#: A restarted broker is found again within a second rather than after the default 30 s backoff.
CLIENT_OPTIONS: dict[str, Any] = {"reconnect_backoff_max_ms": 1000, **NET_BACKEND}


def make_producer(bootstrap: str) -> Any:
    """Idempotent, acks from every in-sync replica, order kept per partition across retries."""
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        max_in_flight_requests_per_connection=5,
        linger_ms=5,
        batch_size=256 * 1024,
        **CLIENT_OPTIONS,
    )


def ensure_topic(bootstrap: str, topic: str, partitions: int, replication: int = 1) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **CLIENT_OPTIONS)
    try:
        admin.create_topics([NewTopic(topic, partitions, replication)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


@dataclass(frozen=True)
class Batch:
    """Records of one poll, per partition, with each partition's end offset as the consumer saw it."""

    records: dict[int, list[Any]]
    highwater: dict[int, int]

    def merged(self, later: Batch) -> Batch:
        records = {p: list(found) for p, found in self.records.items()}
        for partition, found in later.records.items():
            records.setdefault(partition, []).extend(found)
        return Batch(records, {**self.highwater, **later.highwater})


#: Given the partitions just assigned, where to start each (None: the beginning).
OffsetLoader = Callable[[list[int]], Coroutine[Any, Any, dict[int, int | None]]]


class ConsumerThread:
    """One KafkaConsumer in a consumer group, owned by one thread from construction to close()."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[Batch],
        load_offsets: OffsetLoader,
        *,
        max_records: int = 5000,
        session_timeout_ms: int = 10_000,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self.loop = loop
        self.queue = queue
        self.load_offsets = load_offsets
        self.max_records = max_records
        self.session_timeout_ms = session_timeout_ms
        self.stopping = threading.Event()
        self.failed: BaseException | None = None
        self.assigned: set[int] = set()
        self._thread = threading.Thread(target=self._run, name=f"kafka-consumer-{group}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=self.group,
                enable_auto_commit=False,  # offsets live with the view, in its transaction
                auto_offset_reset="earliest",
                max_poll_records=self.max_records,
                max_partition_fetch_bytes=4 * 1024 * 1024,
                session_timeout_ms=self.session_timeout_ms,
                heartbeat_interval_ms=max(500, self.session_timeout_ms // 5),
                **CLIENT_OPTIONS,
            )
        except BaseException as exc:
            self.failed = exc
            return
        try:
            consumer.subscribe([self.topic], listener=_Listener(self, consumer))
            while not self.stopping.is_set():
                polled = consumer.poll(timeout_ms=200)
                if not polled:
                    continue
                records = {tp.partition: list(found) for tp, found in polled.items() if found}
                highwater = {}
                for tp in polled:
                    mark = consumer.highwater(tp)
                    if mark is not None:
                        highwater[tp.partition] = int(mark)
                self._hand_over(Batch(records, highwater))
        except BaseException as exc:
            self.failed = exc
            logger.exception("consumer %s failed", self.group)
        finally:
            consumer.close()

    def _hand_over(self, batch: Batch) -> None:
        """Block this thread (never the event loop) until asyncio has room for the batch."""
        future = asyncio.run_coroutine_threadsafe(self.queue.put(batch), self.loop)
        while not self.stopping.is_set():
            try:
                future.result(timeout=0.5)
                return
            except TimeoutError:
                continue
        future.cancel()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Runs on the consumer's own thread, inside poll()."""

    def __init__(self, owner: ConsumerThread, consumer: Any) -> None:
        self.owner = owner
        self.consumer = consumer

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.owner.assigned -= {tp.partition for tp in revoked}

    def on_partitions_assigned(self, assigned: Any) -> None:
        partitions = sorted(tp.partition for tp in assigned)
        self.owner.assigned |= set(partitions)
        if not partitions:
            return
        future = asyncio.run_coroutine_threadsafe(self.owner.load_offsets(partitions), self.owner.loop)
        starts = future.result(timeout=60)
        for partition in partitions:
            tp = TopicPartition(self.owner.topic, partition)
            start = starts.get(partition)
            if start is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, start)
        logger.info("%s assigned partitions %s", self.owner.group, partitions)
