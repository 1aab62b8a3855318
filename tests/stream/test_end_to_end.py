"""The whole stream as users run it, in real processes: ``proficio serve`` on PostgreSQL, ``proficio relay``
and two ``proficio project --source kafka`` in one consumer group, the real broker, and faults:
kill -9 a projector, kill -9 the relay, restart the broker, each under load. Every time the views end
equal to a replay of the SQL log and hold every acknowledged statement."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from proficio_events import open_event_log
from proficio_projector import LearnerActivity, status
from tests.projector.support import replayed_rows, view_rows
from tests.support.kafka import KafkaBroker
from tests.support.postgres import PostgresServer
from tests.support.server import PROFICIO, RunningServer, running_server

pytestmark = pytest.mark.postgres


@dataclass
class Stack:
    directory: Path
    env: dict[str, str]
    database_url: str
    server: RunningServer
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> None:
        output = (self.directory / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [*PROFICIO, *args], env=self.env, stdout=output, stderr=subprocess.STDOUT
        )
        output.close()

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            assert process.poll() is None, f"{name} exited: {self.output(name)}"

    def output(self, name: str) -> str:
        return (self.directory / f"{name}.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def stack(postgres: PostgresServer, kafka: KafkaBroker, tmp_path: Path) -> Iterator[Stack]:
    name = f"{postgres.database}_e{uuid.uuid4().hex[:8]}"
    url = postgres.create_database(name)
    env = {
        **os.environ,
        "PROFICIO_DATABASE_URL": url,
        "PROFICIO_KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
        "PROFICIO_KAFKA_TOPIC": f"proficio-e2e-{uuid.uuid4().hex[:8]}",
        "PROFICIO_KAFKA_PARTITIONS": "4",
        "PROFICIO_LEASE_TTL_S": "2",
        "PROFICIO_KAFKA_SESSION_TIMEOUT_MS": "6000",
    }
    kafka_env = {k: v for k, v in env.items() if k.startswith("PROFICIO_KAFKA")}
    try:
        with running_server(tmp_path, url, env=kafka_env) as server:
            running = Stack(tmp_path, env, url, server)
            try:
                running.start("relay", "relay")
                running.start("projector-1", "project", "--source", "kafka")
                running.start("projector-2", "project", "--source", "kafka")
                yield running
            finally:
                running.stop()
    finally:
        postgres.drop_database(name)


class Load:
    """Posts statements in batches from a thread, counting what the server acknowledged."""

    def __init__(self, server: RunningServer, total: int, *, batch: int = 20, learners: int = 60) -> None:
        self.server = server
        self.total = total
        self.batch = batch
        self.learners = learners
        self.acknowledged = 0
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        headers = {**self.server.headers, "Content-Type": "application/json"}
        try:
            with httpx.Client(base_url=self.server.base_url, headers=headers, timeout=30) as http:
                sent = 0
                while sent < self.total:
                    body = [statement(n % self.learners, n) for n in range(sent, min(self.total, sent + self.batch))]
                    response = http.post("/xapi/statements", content=orjson.dumps(body))
                    response.raise_for_status()
                    sent += len(body)
                    self.acknowledged = sent
        except BaseException as exc:
            self.failure = exc

    def start(self) -> Load:
        self._thread.start()
        return self

    def wait_until(self, acknowledged: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.acknowledged < acknowledged and self.failure is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.failure is None, self.failure
        assert self.acknowledged >= acknowledged, f"only {self.acknowledged} statements acknowledged"

    def finish(self) -> int:
        self._thread.join(timeout=300)
        assert self.failure is None, self.failure
        return self.acknowledged


def statement(learner: int, n: int) -> dict[str, Any]:
    return {
        "actor": {"mbox": f"mailto:learner{learner}@district.example.org"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/answered"},
        "object": {"id": f"https://district.example.org/items/{n % 97}"},
        "result": {"score": {"scaled": (n % 10) / 10}},
    }


async def settled_views(stack: Stack, acknowledged: int, timeout: float = 120.0) -> list[dict[str, Any]]:
    """Wait until the Kafka-fed view equals a replay of the SQL log and counts every acknowledged statement."""
    log = await open_event_log(stack.database_url, migrate=False)
    try:
        deadline = time.monotonic() + timeout
        while True:
            stack.check_alive()
            try:
                rows = await view_rows(log, LearnerActivity())
            except AssertionError:
                rows = []
            if rows and sum(r["statements"] for r in rows) == acknowledged and rows == await replayed_rows(log):
                found = [s for s in await status(log) if s.name == "learner_activity"]
                assert found[0].dead_letters == 0
                return rows
            if time.monotonic() > deadline:
                counted = sum(r["statements"] for r in rows)
                raise AssertionError(
                    f"the views hold {counted} statements, {acknowledged} acknowledged\n"
                    f"{stack.output('projector-1')}\n{stack.output('relay')}"
                )
            await asyncio.sleep(0.25)
    finally:
        await log.close()


async def test_statements_reach_the_views_through_relay_kafka_and_two_projectors(stack: Stack) -> None:
    acknowledged = Load(stack.server, 1500).start().finish()

    rows = await settled_views(stack, acknowledged)

    assert len(rows) == 60
    async with httpx.AsyncClient(base_url=stack.server.base_url, headers=stack.server.headers, timeout=10) as http:
        page = await http.get("/views/learner_activity/learners", params={"limit": 50})
        assert page.status_code == 200, page.text
        assert len(page.json()["rows"]) == 50
        assert page.headers["X-Experience-API-Consistent-Through"].endswith("Z")
        rest = await http.get(page.json()["more"])
        assert len(rest.json()["rows"]) == 10
        assert rest.json()["more"] is None


async def test_kill_9_a_projector_mid_stream_and_restart_it(stack: Stack) -> None:
    load = Load(stack.server, 3000).start()
    load.wait_until(800)
    stack.kill("projector-1")
    load.wait_until(1600)
    stack.start("projector-1", "project", "--source", "kafka")

    await settled_views(stack, load.finish())


async def test_kill_9_the_relay_mid_stream_and_restart_it(stack: Stack) -> None:
    load = Load(stack.server, 3000).start()
    load.wait_until(800)
    stack.kill("relay")
    load.wait_until(1600)
    stack.start("relay", "relay")  # takes over once the dead relay's lease expires, and re-sends from its checkpoint

    await settled_views(stack, load.finish())


async def test_broker_stopped_and_restarted_under_load(stack: Stack, kafka: KafkaBroker) -> None:
    load = Load(stack.server, 3000).start()
    load.wait_until(800)
    kafka.stop()
    try:
        load.wait_until(1600)  # ingest does not need Kafka: statements are still acknowledged
    finally:
        kafka.start()

    await settled_views(stack, load.finish(), timeout=180)
