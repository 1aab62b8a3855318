"""The record of access: every read of a learner's data (which credential, which learner, what, when) is an
event in the learner's access stream, ``access:<learner>`` (FERPA's record of disclosures, 34 CFR 99.32).

Reads must stay fast, so a read hands its record to the ``AccessRecorder``, which appends the pending
records in batches a few times a second and at shutdown; a read never waits for the log unless the
backlog is full (then it waits, rather than drop a record).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import orjson

from proficio_events import EventLog, NewEvent, StoredEvent, open_sealed, read_keys

RECORD_ACCESSED = "RecordAccessed"
log_ = logging.getLogger("proficio.access")


def access_stream(learner: str) -> str:
    return f"access:{learner}"


class AccessRecorder:
    def __init__(self, log: EventLog, *, interval_s: float = 0.2, max_pending: int = 20_000) -> None:
        self.log = log
        self.interval_s = interval_s
        self._pending: list[tuple[str, NewEvent]] = []
        self._room = asyncio.Semaphore(max_pending)
        self._flushing = asyncio.Lock()

    async def record(self, tenant: str, credential: Any, learners: Iterable[str], what: str, query: str) -> None:
        """Note that ``credential`` read ``what`` (a path and its query) about each of ``learners``."""
        at_us = time.time_ns() // 1000
        for learner in dict.fromkeys(learners):
            await self._room.acquire()
            data = {"learner": learner, "credential": credential.key, "name": credential.name, "what": what,
                    "at_us": at_us}  # fmt: skip
            # The query may name her (agent=...): it is sealed under her key, and goes when she is erased.
            private = orjson.dumps({"query": query})
            event = NewEvent.of(access_stream(learner), RECORD_ACCESSED, data, private=private, seal_for=learner)
            self._pending.append((tenant, event))

    async def flush(self) -> int:
        """Append every pending record (per tenant, one batch each); the number appended."""
        async with self._flushing:
            pending, self._pending = self._pending, []
            by_tenant: dict[str, list[NewEvent]] = defaultdict(list)
            for tenant, event in pending:
                by_tenant[tenant].append(event)
            try:
                for tenant, events in by_tenant.items():
                    await self.log.append(tenant, events)
            except Exception:
                self._pending = pending + self._pending  # keep them for the next round
                raise
            for _ in pending:
                self._room.release()
            return len(pending)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
            try:
                await self.flush()
            except Exception:
                log_.exception("access records could not be appended; retrying")
        await self.flush()


async def access_records(log: EventLog, tenant: str, learner: str) -> list[StoredEvent]:
    return await log.read_stream(tenant, access_stream(learner))


async def listed_access(log: EventLog, tenant: str, learner: str) -> list[dict[str, Any]]:
    """The record of access as the audit API lists it: the query opened with her key (None once erased)."""
    records = await access_records(log, tenant, learner)
    keys = await read_keys(log.engine, tenant, [e.key_id for e in records])
    listed = []
    for e in records:
        opened = None if e.sealed is None else open_sealed(keys, tenant, e.stream, e.key_id, e.sealed)
        query = orjson.loads(opened)["query"] if opened is not None else None
        listed.append({"position": e.position, **{k: v for k, v in e.data().items() if k != "learner"}, "query": query})
    return listed
