"""Logs for the stream tests (with the projector runtime's tables), and a unique topic per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from proficio_events import EventLog, open_event_log
from proficio_projector import migrate_runtime


@pytest.fixture
async def log(store_url: str) -> AsyncIterator[EventLog]:
    opened = await open_event_log(store_url)
    try:
        await migrate_runtime(opened)
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def topic() -> str:
    return f"proficio-test-{uuid.uuid4().hex[:10]}"
