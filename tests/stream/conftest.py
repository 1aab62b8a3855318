"""A unique Kafka topic per stream test (the log fixture is the suite's own, in tests/conftest.py)."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def topic() -> str:
    return f"proficio-test-{uuid.uuid4().hex[:10]}"
