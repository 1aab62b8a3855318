"""Logs for the stream tests (the projector tests' fixture), and a unique topic per test."""

from __future__ import annotations

import uuid

import pytest

from tests.projector.conftest import log

__all__ = ["log"]


@pytest.fixture
def topic() -> str:
    return f"proficio-test-{uuid.uuid4().hex[:10]}"
