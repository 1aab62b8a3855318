"""Learner ids as the learner directory gives them, for tests that talk to a store from outside (a server)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from proficio_events import open_event_log
from proficio_ingest import find_learner_ids


async def stored_learner_ids(url: str, tenant: str, actors: Sequence[Any]) -> list[str]:
    """The learner id of each actor in the store at ``url`` (every one must be known)."""
    log = await open_event_log(url)
    try:
        found = await find_learner_ids(log, tenant, actors)
    finally:
        await log.close()
    assert all(learner is not None for learner in found), f"unknown actors among {actors}"
    return [learner for learner in found if learner is not None]
