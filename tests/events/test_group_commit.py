"""Concurrent appends in one process share group commits of at most ``max_group_events`` events."""

from __future__ import annotations

import asyncio

import pytest

from proficio_events import EventLog, NewEvent
from proficio_events._sql import MAX_GROUP_EVENTS, SqlEventLog
from proficio_ingest import IngestSettings
from proficio_ingest._app import open_ingest_store


async def _groups(log: EventLog, batches: list[int]) -> list[list[int]]:
    """Append the batches (sizes) at once; the batches' sizes grouped by the commit that took them (all
    events of one group commit share one recorded time)."""
    results = await asyncio.gather(
        *(
            log.append("t", [NewEvent.of(f"s{i}-{j}", "Happened", {"n": j}) for j in range(size)])
            for i, size in enumerate(batches)
        )
    )
    by_time: dict[int, list[int]] = {}
    for result in results:
        times = {e.recorded_us for e in result.events}
        assert len(times) == 1  # a batch is never split
        by_time.setdefault(times.pop(), []).append(len(result.events))
    return [by_time[t] for t in sorted(by_time)]


async def test_concurrent_appends_share_one_commit_by_default(log: EventLog) -> None:
    assert isinstance(log, SqlEventLog)
    assert log.max_group_events == MAX_GROUP_EVENTS
    assert await _groups(log, [1] * 6) == [[1] * 6]


async def test_groups_are_cut_at_max_group_events_but_a_batch_is_taken_whole(log: EventLog) -> None:
    assert isinstance(log, SqlEventLog)
    log.max_group_events = 2
    assert await _groups(log, [1] * 6) == [[1, 1], [1, 1], [1, 1]]
    assert await _groups(log, [1, 3, 1, 1]) == [[1], [3], [1, 1]]
    report = await log.verify()
    assert report.ok
    assert report.events_checked == 12


async def test_the_ingest_service_takes_the_setting(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROFICIO_GROUP_MAX_EVENTS", "7")
    settings = IngestSettings(database_url=store_url)
    assert settings.group_max_events == 7
    log = await open_ingest_store(settings)
    try:
        assert isinstance(log, SqlEventLog)
        assert log.max_group_events == 7
    finally:
        await log.close()
    # The service's own default is smaller than the log's: groups of a few requests overlap with the parsing.
    assert IngestSettings.model_fields["group_max_events"].default == 400 < MAX_GROUP_EVENTS
