"""The event stream: relay into Kafka, one projector from Kafka and from the SQL log, and end-to-end lag.

    .venv/bin/python -m bench.stream_throughput                  # 200,000 events; PostgreSQL 15 and Kafka started here
    .venv/bin/python -m bench.stream_throughput --events 50000 --skip-lag

Fills a PostgreSQL log with statement events (about 600 bytes, 5,000 learners), then times, one at a
time on the same log: the relay publishing it all to a 6-partition topic; one `learner_activity`
projector consuming the topic to the end; one `learner_activity` projector folding the SQL log from
position 0. Then (unless --skip-lag) runs `proficio serve`, `proficio relay` and one
`proficio project --source kafka` as processes on a fresh database, posts statements at a steady rate
once the pipeline is live, and samples how far the view's watermark trails the log, in seconds and in
events. Results and how to read them: bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
from tests.support.kafka import running_kafka
from tests.support.postgres import running_postgres
from tests.support.server import PROFICIO, RunningServer, running_server

from bench.ingest_throughput import make_statement, percentile
from bench.log_throughput import statement
from proficio_events import EventLog, NewEvent, open_event_log
from proficio_projector import (
    KafkaProjector,
    LearnerActivity,
    Relay,
    RunnerSettings,
    SqlProjector,
    migrate_runtime,
    relay_consumer,
    status,
)

TENANT = "district-bench"


async def fill(log: EventLog, events: int) -> None:
    """Statement events as ingest appends them (payload ``{"statement": ...}``, keyed by statement id)."""
    for start in range(0, events, 1000):
        size = min(1000, events - start)
        await log.append(
            TENANT,
            [
                NewEvent.of(f"learner:{n % 5000}", "StatementStored", {"statement": statement(n)}, key=f"statement:{n}")
                for n in range(start, start + size)
            ],
        )


async def timed(worker: Any, progress: Callable[[], Awaitable[int]], head: int) -> tuple[float, float]:
    """Run ``worker`` until ``progress()`` reaches ``head``: (events/s once it got going, seconds to get going).

    The rate is timed from the first progress seen, so start-up (topic metadata, joining the consumer
    group) is reported apart rather than averaged in.
    """
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(worker.run(stop))
    first: tuple[float, int] | None = None
    while (done := await progress()) < head:
        if task.done():
            task.result()
        if first is None and done > 0:
            first = (time.perf_counter(), done)
        await asyncio.sleep(0.02)
    finished = time.perf_counter()
    stop.set()
    await task
    if first is None:
        first = (started, 0)
    return (head - first[1]) / max(1e-9, finished - first[0]), first[0] - started


async def throughput(url: str, bootstrap: str, events: int) -> None:
    log = await open_event_log(url)
    await migrate_runtime(log)
    started = time.perf_counter()
    await fill(log, events)
    print(f"  log filled: {events:,} events in {time.perf_counter() - started:.1f} s")
    head = await log.max_position()
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    settings = RunnerSettings(owner="bench", idle_timeout=0.1)

    relay = Relay(log, bootstrap, topic, partitions=6, batch_size=5000, settings=settings)

    async def relayed() -> int:
        return await log.get_checkpoint(relay_consumer(topic))

    report("relay into Kafka", *await timed(relay, relayed, head))

    async def watermark(name: str) -> int:
        found = [s for s in await status(log, topic=topic) if s.name == name]
        return found[0].watermark if found else 0

    kafka_projector = KafkaProjector(log, LearnerActivity(), bootstrap, topic, settings)
    report("one projector from Kafka", *await timed(kafka_projector, lambda: watermark("learner_activity"), head))

    class FromSql(LearnerActivity):
        name = "learner_activity_sql"

    sql_projector = SqlProjector(log, FromSql(), settings)
    report(
        "one projector from the SQL log", *await timed(sql_projector, lambda: watermark("learner_activity_sql"), head)
    )
    await log.close()


def report(label: str, rate: float, start_up: float) -> None:
    print(f"  {label:<36} {rate:>10,.0f} events/s   (start-up {start_up:.1f} s)", flush=True)


@contextlib.contextmanager
def running_stream(url: str, bootstrap: str) -> Iterator[tuple[RunningServer, str]]:
    """``proficio serve``, ``proficio relay`` and one ``proficio project --source kafka``, as processes."""
    topic = f"bench-lag-{uuid.uuid4().hex[:8]}"
    env = {"PROFICIO_KAFKA_BOOTSTRAP": bootstrap, "PROFICIO_KAFKA_TOPIC": topic}
    full_env = {**os.environ, "PROFICIO_DATABASE_URL": url, **env}
    with tempfile.TemporaryDirectory() as tmp, running_server(Path(tmp), url, env=env) as server:
        workers = [
            subprocess.Popen([*PROFICIO, "relay"], env=full_env, stderr=subprocess.DEVNULL),
            subprocess.Popen([*PROFICIO, "project", "--source", "kafka"], env=full_env, stderr=subprocess.DEVNULL),
        ]
        try:
            yield server, topic
        finally:
            for worker in workers:
                worker.terminate()
                worker.wait(timeout=30)


async def lag(url: str, server: RunningServer, topic: str, rate: int, seconds: float) -> None:
    """Post ``rate`` statements/s (batches of 20) and sample the view's watermark every 100 ms."""
    log = await open_event_log(url)
    try:
        lags_s: list[float] = []
        lags_events: list[int] = []
        headers = {**server.headers, "Content-Type": "application/json"}
        rng = random.Random(5)
        bodies = [orjson.dumps([make_statement(rng) for _ in range(20)]) for _ in range(200)]
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as http:
            # Steady state only: the relay and the projector are up and the projector holds its partitions.
            (await http.post("/xapi/statements", content=bodies[0])).raise_for_status()
            while True:
                found = [s for s in await status(log, topic=topic) if s.name == "learner_activity"]
                if found and found[0].lag == 0:
                    break
                await asyncio.sleep(0.1)
            interval = 20 / rate
            start = time.perf_counter()
            sent = 0

            async def post(body: bytes) -> None:
                response = await http.post("/xapi/statements", content=body)
                response.raise_for_status()

            async def sample() -> None:
                while time.perf_counter() - start < seconds:
                    await asyncio.sleep(0.1)
                    head = await log.max_position()
                    found = [s for s in await status(log, topic=topic) if s.name == "learner_activity"]
                    if not found:
                        continue
                    mark = found[0].watermark
                    lags_events.append(head - mark)
                    if mark >= head:
                        lags_s.append(0.0)
                        continue
                    # How long ago the oldest event not yet in the view was stored.
                    oldest = await log.read_after(mark, 1)
                    lags_s.append(max(0.0, time.time() - oldest[0].recorded_us / 1e6))

            sampler = asyncio.create_task(sample())
            pending: set[asyncio.Task[None]] = set()
            while time.perf_counter() - start < seconds:
                task = asyncio.create_task(post(bodies[sent % len(bodies)]))
                pending.add(task)
                task.add_done_callback(pending.discard)
                sent += 1
                await asyncio.sleep(max(0.0, start + sent * interval - time.perf_counter()))
            await asyncio.gather(*pending)
            await sampler
            achieved = sent * 20 / (time.perf_counter() - start)
        print(
            f"  end-to-end lag at {achieved:,.0f} statements/s (HTTP -> log -> relay -> Kafka -> view): "
            f"p50 {percentile(lags_s, 0.5) * 1000:.0f} ms, p99 {percentile(lags_s, 0.99) * 1000:.0f} ms, "
            f"max {max(lags_s) * 1000:.0f} ms; events behind: p50 {percentile(lags_events, 0.5):.0f}, "
            f"max {max(lags_events)}"
        )
    finally:
        await log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rate", type=int, default=2000, help="statements/s for the lag measurement")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--skip-lag", action="store_true")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, CPython {platform.python_version()}")
    with running_postgres() as pg, running_kafka() as kafka:
        asyncio.run(throughput(pg.url, kafka.bootstrap_servers, args.events))
        if not args.skip_lag:
            url = pg.create_database(f"{pg.database}_lag")  # a log of its own, not the 200,000 above
            with running_stream(url, kafka.bootstrap_servers) as (server, topic):
                asyncio.run(lag(url, server, topic, args.rate, args.seconds))


if __name__ == "__main__":
    main()
