"""Session-wide fixtures: the real services the tests talk to."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from proficio_events import EventLog, open_event_log
from proficio_projector import migrate_runtime
from tests.support.kafka import KafkaBroker, running_kafka
from tests.support.postgres import PostgresServer, running_postgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL 15 with a database of this run's own, dropped at the end."""
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaBroker]:
    """A real single-node Apache Kafka (KRaft) on loopback, stopped and deleted at the end."""
    with running_kafka() as broker:
        yield broker


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The log address, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'proficio.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = f"{server.database}_i{abs(hash(request.node.nodeid)) % 10**8}"
    yield server.create_database(name)
    server.drop_database(name)


@pytest.fixture
async def log(store_url: str) -> AsyncIterator[EventLog]:
    """A log on ``store_url`` with the projector runtime's tables beside it."""
    opened = await open_event_log(store_url)
    try:
        await migrate_runtime(opened)
        yield opened
    finally:
        await opened.close()
