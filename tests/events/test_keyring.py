"""The key ring under the log: private data sealed in the append, under one key per learner, bound to its
stream; keys destroyed by erasure; the chain untouched."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from proficio_events import (
    EventLog,
    InvalidBatchError,
    NewEvent,
    destroy_keys,
    learners_with_live_keys,
    open_sealed,
    read_keys,
)
from proficio_events._schema import learner_keys


async def test_private_data_is_sealed_under_the_learners_key(log: EventLog) -> None:
    events = [
        NewEvent.of("learner:a", "Noted", {"n": n}, private=f"secret {n}".encode(), seal_for="learner:a")
        for n in range(3)
    ] + [NewEvent.of("learner:b", "Noted", {"n": 9}, private=b"secret b", seal_for="learner:b")]
    result = await log.append("t1", events)
    stored = result.events
    assert [e.opened for e in stored] == [b"secret 0", b"secret 1", b"secret 2", b"secret b"]  # for inline handlers
    assert all(e.sealed is not None and b"secret" not in e.sealed for e in stored)
    assert len({e.key_id for e in stored[:3]}) == 1  # one key per learner
    assert stored[3].key_id != stored[0].key_id
    assert len({e.sealed for e in stored}) == 4  # a fresh nonce each time
    read = await log.read_after(0)
    keys = await read_keys(log.engine, "t1", [e.key_id for e in read])
    assert [open_sealed(keys, "t1", e.stream, e.key_id, e.sealed or b"") for e in read] == [
        b"secret 0", b"secret 1", b"secret 2", b"secret b"
    ]  # fmt: skip
    # Bound to tenant and stream: moved elsewhere, the ciphertext does not open.
    first = read[0]
    assert open_sealed(keys, "t1", "learner:b", first.key_id, first.sealed or b"") is None
    assert open_sealed(keys, "t2", first.stream, first.key_id, first.sealed or b"") is None

    # The next batch finds her key (no second one); erasure destroys it, and the chain still holds.
    again = await log.append("t1", [NewEvent.of("learner:a", "Noted", {}, private=b"later", seal_for="learner:a")])
    assert again.events[0].key_id == first.key_id
    async with log.transaction() as conn:
        assert await destroy_keys(conn, "t1", "learner:a", erased_by="test", at_us=1) == [first.key_id]
    async with log.transaction() as conn:
        assert await destroy_keys(conn, "t1", "learner:a", erased_by="test", at_us=2) == []  # twice: nothing
    assert await learners_with_live_keys(log.engine, "t1", ["learner:a", "learner:b"]) == ["learner:b"]
    keys = await read_keys(log.engine, "t1", [e.key_id for e in read])
    assert open_sealed(keys, "t1", first.stream, first.key_id, first.sealed or b"") is None
    assert (await log.verify()).ok
    # Data for her after the erasure: a new key (a new epoch), never the destroyed one.
    later = await log.append("t1", [NewEvent.of("learner:a", "Noted", {}, private=b"new", seal_for="learner:a")])
    assert later.events[0].key_id not in (None, first.key_id)
    async with log.engine.connect() as conn:
        rows = (await conn.execute(sa.select(learner_keys).where(learner_keys.c.learner == "learner:a"))).mappings()
        by_id = {r["key_id"]: r for r in rows}
    assert (by_id[first.key_id]["data_key"], by_id[first.key_id]["erased_by"]) == (None, "test")


async def test_keyed_private_events_need_a_fingerprint_and_repeat_without_a_new_key(log: EventLog) -> None:
    with pytest.raises(InvalidBatchError, match="no learner"):
        await log.append("t1", [NewEvent.of("s", "X", {}, private=b"p")])
    with pytest.raises(InvalidBatchError, match="fingerprint"):
        await log.append("t1", [NewEvent.of("s", "X", {}, key="k", private=b"p", seal_for="learner:a")])
    event = NewEvent.of("learner:a", "X", {}, key="k", fingerprint=b"f" * 32, private=b"p", seal_for="learner:a")
    first = await log.append("t1", [event])
    repeat = await log.append("t1", [event])
    assert repeat.created == (False,)
    assert repeat.events[0].sealed == first.events[0].sealed
    async with log.engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(learner_keys)) == 1
