"""What a test's code sends to PostgreSQL: the queries passed to asyncpg's connection methods, in order."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import asyncpg
import pytest


def record_queries(
    monkeypatch: pytest.MonkeyPatch,
    methods: Iterable[str] = ("fetch",),
    *,
    ignore: asyncpg.Connection | None = None,
    on_sent: Callable[[str], None] | None = None,
) -> list[str]:
    """Record the first argument (the query; "" if none) of every call of ``methods`` on any asyncpg connection
    but ``ignore``, until ``monkeypatch.undo()``; ``on_sent`` is called with each one as it is sent."""
    sent: list[str] = []
    for name in methods:
        original = getattr(asyncpg.Connection, name)

        def recording(self: asyncpg.Connection, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            if self is not ignore:
                sent.append(str(args[0]) if args else "")
                if on_sent is not None:
                    on_sent(sent[-1])
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(asyncpg.Connection, name, recording)
    return sent
