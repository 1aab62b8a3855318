"""Waiting for what a server does in the background (projectors folding, refreshes, batched records)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


async def eventually(read: Callable[[], Awaitable[T]], ready: Callable[[T], bool], what: str, timeout: float = 60) -> T:
    """``read()`` again every 0.1 s until ``ready`` says yes (then its value), failing after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = await read()
        if ready(value):
            return value
        assert time.monotonic() < deadline, f"{what}: {value}"
        await asyncio.sleep(0.1)


async def json_when(read: Callable[[], Awaitable[httpx.Response]], ready: Callable[[Any], bool], what: str) -> Any:
    """The JSON body of the first 200 response that ``ready`` accepts."""
    response = await eventually(read, lambda r: r.status_code == 200 and ready(r.json()), what)
    return response.json()
