"""The contract every event-log backend must meet. Subclass ``LogContract`` and provide ``log_url``.

Each test opens logs on a fresh, empty database at ``log_url``.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncConnection

from proficio_events import (
    GENESIS,
    PENDING_LEARNER,
    AppendResult,
    ConcurrencyError,
    DuplicateEventError,
    EventLog,
    EventStoreError,
    InvalidBatchError,
    LogTamperedError,
    NewEvent,
    Signer,
    StoredEvent,
    StreamHead,
    chain_hash,
    destroy_keys,
    open_event_log,
)
from proficio_events._schema import learner_directory, learner_keys

T = "district-1"


def ev(stream: str, n: int = 0, **kwargs: object) -> NewEvent:
    return NewEvent.of(stream, "Happened", {"n": n, "text": "é" * (n % 5)}, **kwargs)  # type: ignore[arg-type]


async def read_all(log: EventLog, tenant: str | None = None) -> list[StoredEvent]:
    out: list[StoredEvent] = []
    position = 0
    while batch := await log.read_after(position, 7, tenant=tenant):
        out.extend(batch)
        position = batch[-1].position
    return out


class LogContract:
    """Behaviour shared by every backend."""

    @pytest.fixture
    def log_url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    async def log(self, log_url: str) -> AsyncIterator[EventLog]:
        log = await open_event_log(log_url)
        yield log
        await log.close()

    @pytest.fixture
    def tamper(self, log_url: str) -> Callable[[str], None]:
        """Run raw SQL against the log's database, as an attacker with database access would."""
        raise NotImplementedError

    # -- appending and reading -------------------------------------------------------------------

    async def test_empty_log(self, log: EventLog) -> None:
        assert await log.max_position() == 0
        assert await log.head() == (0, 0)
        assert await log.read_after(0) == []
        assert (await log.verify()).ok

    async def test_append_assigns_contiguous_positions_and_stream_versions(self, log: EventLog) -> None:
        first = await log.append(T, [ev("learner:a", 1), ev("learner:b", 2), ev("learner:a", 3)])
        assert [e.position for e in first.events] == [1, 2, 3]
        assert [e.stream_version for e in first.events] == [1, 1, 2]
        assert first.created == (True, True, True)
        second = await log.append(T, [ev("learner:a", 4)])
        assert second.events[0].position == 4
        assert second.events[0].stream_version == 3
        assert await log.max_position() == 4
        assert await log.head() == (4, second.events[0].recorded_us)
        stored = await read_all(log)
        assert [e.position for e in stored] == [1, 2, 3, 4]
        assert [e.data()["n"] for e in stored] == [1, 2, 3, 4]
        assert stored == list(first.events) + list(second.events)
        assert stored[0].recorded_us <= stored[3].recorded_us

    async def test_read_after_pages_and_filters_by_tenant(self, log: EventLog) -> None:
        await log.append(T, [ev("s", i) for i in range(5)])
        await log.append("district-2", [ev("s", i) for i in range(3)])
        await log.append(T, [ev("s", 9)])
        assert [e.position for e in await log.read_after(2, 3)] == [3, 4, 5]
        assert [e.position for e in await read_all(log, T)] == [1, 2, 3, 4, 5, 9]
        assert [e.tenant for e in await read_all(log, "district-2")] == ["district-2"] * 3

    async def test_scan_after_returns_the_types_asked_for_and_the_position_covered(self, log: EventLog) -> None:
        def typed(event_type: str, n: int) -> NewEvent:
            return NewEvent.of("s", event_type, {"n": n})

        await log.append(T, [typed("A", 1), typed("B", 2), typed("B", 3), typed("A", 4), typed("C", 5), typed("B", 6)])
        await log.append("district-2", [typed("A", 7)])
        batch, covered = await log.scan_after(0, 100, {"A"})
        assert [e.position for e in batch] == [1, 4, 7]
        assert covered == 7  # the head: nothing of type A was passed over
        batch, covered = await log.scan_after(0, 2, {"A", "C"})
        assert [e.position for e in batch] == [1, 4]
        assert covered == 4  # a full page covers up to its last event only
        batch, covered = await log.scan_after(4, 2, {"A", "C"})
        assert ([e.position for e in batch], covered) == ([5, 7], 7)
        assert await log.scan_after(7, 10, {"A"}) == ([], 7)
        assert await log.scan_after(1, 10, {"nothing"}) == ([], 7)
        every, covered = await log.scan_after(2, 3)
        assert ([e.position for e in every], covered) == ([3, 4, 5], 5)
        assert every == (await log.read_after(2, 3))

    async def test_read_stream_is_per_tenant(self, log: EventLog) -> None:
        await log.append(T, [ev("learner:a", 1), ev("learner:b", 2), ev("learner:a", 3)])
        await log.append("district-2", [ev("learner:a", 4)])
        mine = await log.read_stream(T, "learner:a")
        assert [e.data()["n"] for e in mine] == [1, 3]
        assert [e.data()["n"] for e in await log.read_stream(T, "learner:a", after_version=1)] == [3]
        assert [e.data()["n"] for e in await log.read_stream("district-2", "learner:a")] == [4]

    async def test_large_keyed_batch(self, log: EventLog) -> None:
        """Large batches take the bulk path (COPY on PostgreSQL); repeats of them stay no-ops."""
        batch = [ev(f"learner:{i % 37}", i, key=f"stmt-{i}") for i in range(1500)]
        first = await log.append(T, batch)
        assert [e.position for e in first.events] == list(range(1, 1501))
        assert all(first.created)
        again = await log.append(T, [*batch[700:], ev("learner:x", -1, key="fresh")])
        assert again.created == (False,) * 800 + (True,)
        assert again.events[-1].position == 1501
        assert [e.position for e in again.events[:800]] == list(range(701, 1501))
        assert [e.stream_version for e in await log.read_stream(T, "learner:3")] == list(range(1, 42))
        assert (await log.verify()).events_checked == 1501

    async def test_payload_and_sealed_bodies_round_trip(self, log: EventLog) -> None:
        sealed = bytes(range(256))
        await log.append(T, [NewEvent("s", "Secret", b'{"x":1}', sealed=sealed, key_id="key-1", schema_version=3)])
        (stored,) = await log.read_after(0)
        assert (stored.payload, stored.sealed, stored.key_id, stored.schema_version) == (b'{"x":1}', sealed, "key-1", 3)
        assert stored.event_type == "Secret"

    # -- atomicity and idempotency -----------------------------------------------------------------

    async def test_repeated_key_with_same_content_is_a_no_op(self, log: EventLog) -> None:
        first = await log.append(T, [ev("s", 1, key="stmt-1")])
        again = await log.append(T, [ev("s", 1, key="stmt-1"), ev("s", 2, key="stmt-2")])
        assert again.created == (False, True)
        assert again.events[0] == first.events[0]
        assert again.events[1].position == 2
        assert await log.max_position() == 2
        assert (await log.get_by_key(T, "stmt-1")) == first.events[0]
        assert await log.get_by_key(T, "nope") is None
        found = await log.get_by_keys(T, ["stmt-2", "nope", "stmt-1", "stmt-2"])
        assert found == [first.events[0], again.events[1]]  # those that exist, once each, in log order
        assert await log.get_by_keys("district-2", ["stmt-1"]) == []  # keys are per tenant

    async def test_only_repeats_append_nothing(self, log: EventLog) -> None:
        await log.append(T, [ev("s", 1, key="k")])
        again = await log.append(T, [ev("s", 1, key="k")])
        assert again.created == (False,)
        assert await log.max_position() == 1

    async def test_repeated_key_with_other_content_conflicts_and_writes_nothing(self, log: EventLog) -> None:
        await log.append(T, [ev("s", 1, key="stmt-1")])
        with pytest.raises(DuplicateEventError) as caught:
            await log.append(T, [ev("s", 5, key="stmt-5"), ev("s", 2, key="stmt-1")])
        assert caught.value.keys == ["stmt-1"]
        assert await log.max_position() == 1
        assert await log.get_by_key(T, "stmt-5") is None

    async def test_fingerprint_decides_sameness(self, log: EventLog) -> None:
        await log.append(T, [NewEvent.of("s", "S", {"stored": 1}, key="k", fingerprint=b"same")])
        again = await log.append(T, [NewEvent.of("s", "S", {"stored": 2}, key="k", fingerprint=b"same")])
        assert again.created == (False,)
        assert again.events[0].data() == {"stored": 1}
        with pytest.raises(DuplicateEventError):
            await log.append(T, [NewEvent.of("s", "S", {"stored": 1}, key="k", fingerprint=b"other")])

    async def test_a_new_key_is_not_looked_up_but_still_unique(self, log: EventLog) -> None:
        # new_key: the writer says no event can have the key yet, so the group commit does not look it up. Were it
        # stored after all, the key's unique index refuses the batch (rather than answering it as a repeat).
        fresh = await log.append(T, [ev("s", 1, key="made-here", new_key=True), ev("s", 2, key="given")])
        assert fresh.created == (True, True)
        assert await log.get_by_key(T, "made-here") == fresh.events[0]
        again = await log.append(T, [ev("s", 2, key="given")])
        assert again.created == (False,)  # a key the writer did not make is looked up as before
        with pytest.raises(EventStoreError):
            await log.append(T, [ev("s", 1, key="made-here", new_key=True)])
        assert await log.max_position() == 2
        # Nothing was left half-done: the log takes appends after the refusal.
        assert (await log.append(T, [ev("s", 3, key="next", new_key=True)])).events[0].position == 3

    async def test_keys_are_per_tenant(self, log: EventLog) -> None:
        await log.append(T, [ev("s", 1, key="k")])
        other = await log.append("district-2", [ev("s", 2, key="k")])
        assert other.created == (True,)
        assert (await log.get_by_key("district-2", "k")) == other.events[0]

    async def test_malformed_batches_are_refused(self, log: EventLog) -> None:
        with pytest.raises(InvalidBatchError):
            await log.append(T, [ev("s", 1, key="k"), ev("s", 2, key="k")])
        with pytest.raises(InvalidBatchError):
            await log.append("", [ev("s", 1)])
        with pytest.raises(InvalidBatchError):
            await log.append(T, [NewEvent("", "X", b"{}")])
        assert await log.max_position() == 0
        assert (await log.append(T, [])).events == ()

    async def test_expected_version(self, log: EventLog) -> None:
        await log.append(T, [ev("doc", 1, expected_version=0), ev("doc", 2, expected_version=1)])
        with pytest.raises(ConcurrencyError) as caught:
            await log.append(T, [ev("other", 0), ev("doc", 3, expected_version=1)])
        assert (caught.value.expected, caught.value.actual) == (1, 2)
        assert await log.max_position() == 2
        with pytest.raises(ConcurrencyError):
            await log.append(T, [ev("doc", 3, expected_version=0)])
        done = await log.append(T, [ev("doc", 3, expected_version=2)])
        assert done.events[0].stream_version == 3

    async def test_inline_work_shares_the_append_transaction(self, log: EventLog) -> None:
        async with log.transaction() as conn:
            await conn.execute(sa.text("CREATE TABLE inline_view (position BIGINT PRIMARY KEY)"))

        async def project(conn: AsyncConnection, new: Sequence[StoredEvent]) -> None:
            for event in new:
                await conn.execute(sa.text("INSERT INTO inline_view VALUES (:p)"), {"p": event.position})
            if any(e.data()["n"] == 13 for e in new):
                raise RuntimeError("unlucky")

        await log.append(T, [ev("s", 1), ev("s", 2)], inline=project)
        with pytest.raises(RuntimeError, match="unlucky"):
            await log.append(T, [ev("s", 3), ev("s", 13)], inline=project)
        assert await log.max_position() == 2
        async with log.transaction() as conn:
            rows = (await conn.execute(sa.text("SELECT position FROM inline_view ORDER BY 1"))).scalars()
            assert list(rows) == [1, 2]

    # -- group commit: concurrent appends share a transaction, yet each stays all-or-nothing ------------

    async def test_an_append_right_after_another_is_committed(self, log: EventLog) -> None:
        """The next append comes as soon as the last one's result does: its writer may just be ending (a writer
        that has ended but not yet run its done-callbacks once kept the next append waiting forever)."""

        async def one_after_another() -> list[int]:
            # Awaited in this task, not each in a task of its own: the next append is queued at once.
            return [(await log.append(T, [ev("s", n)])).events[0].position for n in range(20)]

        assert await asyncio.wait_for(one_after_another(), 30) == list(range(1, 21))

    async def test_concurrent_appends_fail_and_succeed_independently(self, log: EventLog) -> None:
        await log.append(T, [ev("s", 0, key="taken"), ev("doc", 0)])

        async def boom(conn: AsyncConnection, new: Sequence[StoredEvent]) -> None:
            raise RuntimeError("inline failure")

        outcomes = await asyncio.gather(
            log.append(T, [ev("a", 1, key="k1"), ev("a", 2)]),
            log.append(T, [ev("b", 3, key="taken")]),  # a conflict: different content under a taken key
            log.append(T, [ev("c", 4), ev("doc", 5, expected_version=0)]),  # a stale expected version
            log.append(T, [ev("d", 6)], inline=boom),
            log.append("district-2", [ev("e", 7, key="k1")]),
            log.append(T, [ev("f", 8, key="k1")]),  # repeats k1 of the first batch with other content
            log.append(T, [ev("a", 1, key="k1")]),  # repeats it with the same content
            return_exceptions=True,
        )
        assert isinstance(outcomes[0], AppendResult)
        assert isinstance(outcomes[1], DuplicateEventError)
        assert isinstance(outcomes[2], ConcurrencyError)
        assert isinstance(outcomes[3], RuntimeError)
        assert isinstance(outcomes[4], AppendResult)
        assert isinstance(outcomes[5], DuplicateEventError)
        assert isinstance(outcomes[6], AppendResult)
        assert outcomes[6].created == (False,)
        assert outcomes[6].events[0] == outcomes[0].events[0]
        stored = await read_all(log)
        assert [e.data()["n"] for e in stored] == [0, 0, 1, 2, 7]
        assert [e.position for e in stored] == [1, 2, 3, 4, 5]
        assert (await log.verify()).ok

    # -- decided appends: the batch chosen from the streams' heads under the write lock -----------------

    async def test_a_decided_append_sees_each_stream_head_and_appends_what_it_decides(self, log: EventLog) -> None:
        await log.append(T, [ev("doc", 1), ev("doc", 2)])
        seen: list[Mapping[str, StreamHead]] = []

        def decide(heads: Mapping[str, StreamHead]) -> list[NewEvent]:
            seen.append(dict(heads))
            return [ev("doc", 3, expected_version=heads["doc"].version), ev("new", 4)]

        done = await log.append_decided(T, ["doc", "new"], decide)
        (heads,) = seen
        assert (heads["doc"].version, heads["doc"].event_type, heads["doc"].data()) == (
            2,
            "Happened",
            {"n": 2, "text": "éé"},
        )
        assert heads["doc"].recorded_us > 0
        assert not heads["doc"].erased
        assert heads["new"] == StreamHead("new", 0)
        assert [(e.stream, e.stream_version) for e in done.events] == [("doc", 3), ("new", 1)]
        nothing = await log.append_decided(T, ["doc"], lambda heads: [])
        assert nothing.events == ()
        assert await log.max_position() == 4

    async def test_decided_appends_in_one_group_see_the_batches_decided_before_them(self, log: EventLog) -> None:
        """Eight writers that each want to move ``doc`` from the version they find: decided one after the other
        (whether they share a transaction or not), so every one of them lands, each on the version before it,
        and a failing decision or a refused batch among them costs the others nothing."""
        await log.append(T, [ev("doc", 0)])
        outcomes: list[int] = []

        def step(n: int) -> Callable[[Mapping[str, StreamHead]], list[NewEvent]]:
            def decide(heads: Mapping[str, StreamHead]) -> list[NewEvent]:
                if n == 3:
                    raise LookupError("no, thanks")
                if n == 5:
                    return [ev("elsewhere", n)]  # a stream it did not name
                outcomes.append(heads["doc"].version)
                return [ev("doc", n, expected_version=heads["doc"].version)]

            return decide

        results = await asyncio.gather(
            *(log.append_decided(T, ["doc"], step(n)) for n in range(1, 9)),
            log.append(T, [ev("doc", 99)]),  # a plain append on the same stream, among them
            return_exceptions=True,
        )
        assert isinstance(results[2], LookupError)
        assert isinstance(results[4], InvalidBatchError)
        stored = [e for e in await read_all(log) if e.stream == "doc"]
        assert [e.stream_version for e in stored] == list(range(1, 9))
        # Six decisions landed, each on a head none of the others saw (the plain append made one of them).
        assert len(set(outcomes)) == len(outcomes) == 6
        assert set(outcomes) <= set(range(1, 8))
        assert sorted(e.data()["n"] for e in stored) == [0, 1, 2, 4, 6, 7, 8, 99]
        assert (await log.verify()).ok

    async def test_a_decided_append_seals_for_named_learners_and_sees_erased_keys(self, log: EventLog) -> None:
        def put(heads: Mapping[str, StreamHead]) -> list[NewEvent]:
            return [NewEvent.of("doc", "Put", {"v": heads["doc"].version}, private=b"mine", seal_for="learner:a")]

        first = (await log.append_decided(T, ["doc"], put, seal_for=["learner:a"])).events[0]
        assert first.key_id is not None
        with pytest.raises(InvalidBatchError):
            await log.append_decided(T, ["doc"], put)  # learner:a not named
        seen: list[StreamHead] = []
        await log.append_decided(T, ["doc"], lambda heads: seen.append(heads["doc"]) or [])
        async with log.transaction() as conn:
            await destroy_keys(conn, T, "learner:a", erased_by="test", at_us=1)
        await log.append_decided(T, ["doc"], lambda heads: seen.append(heads["doc"]) or [])
        assert [(h.version, h.key_id, h.erased) for h in seen] == [(1, first.key_id, False), (1, first.key_id, True)]
        again = (await log.append_decided(T, ["doc"], put, seal_for=["learner:a"])).events[0]
        assert again.key_id not in (None, first.key_id)  # a fresh key after the erasure, never the destroyed one
        assert (again.stream_version, again.data()) == (2, {"v": 1})

    async def test_a_refused_decision_leaves_no_learner_id_and_no_key(self, log: EventLog) -> None:
        """Her id and her key are made once the decision holds: a decision that refuses (a failed precondition) for
        a learner the log has not seen leaves neither; the same append deciding to store makes both, and a second
        decision for her in the same group shares them."""

        def put(heads: Mapping[str, StreamHead]) -> list[NewEvent]:
            return [NewEvent.of("doc", "Put", {"v": heads["doc"].version}, private=b"mine",
                                seal_for=PENDING_LEARNER, learner_of="digest:new")]  # fmt: skip

        def refuse(heads: Mapping[str, StreamHead]) -> list[NewEvent]:
            raise LookupError("precondition failed")

        async def rows() -> tuple[int, int]:
            async with log.engine.connect() as conn:
                return (await conn.scalar(sa.select(sa.func.count()).select_from(learner_directory)) or 0,
                        await conn.scalar(sa.select(sa.func.count()).select_from(learner_keys)) or 0)  # fmt: skip

        named = {"seal_for": [PENDING_LEARNER], "learner_of": "digest:new"}
        with pytest.raises(LookupError):
            await log.append_decided(T, ["doc"], refuse, **named)  # type: ignore[arg-type]
        assert await rows() == (0, 0)
        assert await log.max_position() == 0
        first, second = await asyncio.gather(
            log.append_decided(T, ["doc"], put, **named),  # type: ignore[arg-type]
            log.append_decided(T, ["doc"], put, **named),  # type: ignore[arg-type]
        )
        assert await rows() == (1, 1)
        assert first.events[0].key_id == second.events[0].key_id is not None
        assert [e.data()["v"] for e in (first.events[0], second.events[0])] == [0, 1]

    # -- concurrency -------------------------------------------------------------------------------

    async def test_concurrent_writers_never_interleave_and_a_tailing_reader_misses_nothing(self, log_url: str) -> None:
        writers, batches_each = 6, 12
        logs = [await open_event_log(log_url) for _ in range(writers + 1)]
        reader_log = logs[-1]
        results: dict[int, list[tuple[int, ...]]] = {w: [] for w in range(writers)}
        done = asyncio.Event()
        seen: list[int] = []

        async def write(w: int) -> None:
            rng = random.Random(w)
            for b in range(batches_each):
                size = rng.choice([1, 2, 5, 17, 60])
                batch = [ev(f"learner:{rng.randrange(9)}", w * 1000 + b, key=f"w{w}-b{b}-{i}") for i in range(size)]
                result = await logs[w].append(T, batch)
                results[w].append(tuple(e.position for e in result.events))
                await asyncio.sleep(0)

        async def tail() -> None:
            position = 0
            while True:
                batch = await reader_log.read_after(position, 50)
                for event in batch:
                    seen.append(event.position)
                if batch:
                    position = batch[-1].position
                elif done.is_set() and position == await reader_log.max_position():
                    return
                else:
                    await reader_log.wait_for_events(position, 0.2)

        try:
            reader = asyncio.create_task(tail())
            await asyncio.gather(*(write(w) for w in range(writers)))
            done.set()
            await asyncio.wait_for(reader, 60)
        finally:
            for one in logs:
                await one.close()
        total = sum(len(p) for r in results.values() for p in r)
        # Each batch is contiguous; a writer's later batch comes after its earlier one.
        for batches in results.values():
            for positions in batches:
                assert list(positions) == list(range(positions[0], positions[0] + len(positions)))
            starts = [p[0] for p in batches]
            assert starts == sorted(starts)
        # No two batches overlap, and together they fill 1..total without a gap.
        everything = sorted(p for r in results.values() for positions in r for p in positions)
        assert everything == list(range(1, total + 1))
        # The reader saw every event exactly once, in order, although writers committed meanwhile.
        assert seen == list(range(1, total + 1))

    async def test_a_scanning_reader_passes_over_nothing_of_its_types_while_writers_append(self, log_url: str) -> None:
        """``scan_after``'s covered position never runs past an event of its types that commits later."""
        writers, batches_each = 4, 15
        logs = [await open_event_log(log_url) for _ in range(writers + 1)]
        reader_log = logs[-1]
        done = asyncio.Event()
        seen: list[int] = []

        async def write(w: int) -> None:
            rng = random.Random(w)
            for b in range(batches_each):
                batch = [
                    NewEvent.of(f"learner:{rng.randrange(9)}", rng.choice("AB"), {"w": w, "b": b, "i": i})
                    for i in range(rng.choice([1, 3, 20]))
                ]
                await logs[w].append(T, batch)
                await asyncio.sleep(0)

        async def scan() -> None:
            position = 0
            while True:
                batch, covered = await reader_log.scan_after(position, 4, {"A"})
                assert all(e.position > position and e.event_type == "A" for e in batch)
                seen.extend(e.position for e in batch)
                if covered > position:
                    position = covered
                elif done.is_set() and position == await reader_log.max_position():
                    return
                else:
                    await reader_log.wait_for_events(position, 0.2)

        try:
            reader = asyncio.create_task(scan())
            await asyncio.gather(*(write(w) for w in range(writers)))
            done.set()
            await asyncio.wait_for(reader, 60)
            wanted = [e.position for e in await read_all(reader_log) if e.event_type == "A"]
        finally:
            for one in logs:
                await one.close()
        assert wanted
        assert seen == wanted

    async def test_writers_in_other_processes_do_not_interleave(self, log_url: str, tmp_path: Path) -> None:
        script = tmp_path / "writer.py"
        script.write_text(
            textwrap.dedent(f"""
            import asyncio, sys
            from proficio_events import NewEvent, open_event_log
            async def main(name):
                log = await open_event_log({log_url!r})
                for b in range(15):
                    r = await log.append("{T}", [NewEvent.of("s" + name, "P", {{"w": name, "b": b}})
                                                 for _ in range(1 + b % 4)])
                    print(",".join(str(e.position) for e in r.events), flush=True)
                await log.close()
            asyncio.run(main(sys.argv[1]))
        """)
        )
        procs = [
            await asyncio.create_subprocess_exec(sys.executable, str(script), str(n), stdout=subprocess.PIPE)
            for n in range(3)
        ]
        outputs = [await p.communicate() for p in procs]
        assert all(p.returncode == 0 for p in procs)
        batches = [[int(x) for x in line.split(",")] for out, _ in outputs for line in out.decode().split()]
        for positions in batches:
            assert positions == list(range(positions[0], positions[0] + len(positions)))
        assert sorted(p for b in batches for p in b) == list(range(1, 3 * sum(1 + b % 4 for b in range(15)) + 1))
        log = await open_event_log(log_url)
        try:
            assert (await log.verify()).ok
        finally:
            await log.close()

    async def test_wait_for_events_wakes_on_another_connections_commit(self, log_url: str) -> None:
        waiter = await open_event_log(log_url)
        writer = await open_event_log(log_url)
        try:
            assert await waiter.wait_for_events(0, 0.05) is False
            pending = asyncio.create_task(waiter.wait_for_events(0, 10))
            await asyncio.sleep(0.1)
            assert not pending.done()
            start = asyncio.get_running_loop().time()
            await writer.append(T, [ev("s", 1)])
            assert await asyncio.wait_for(pending, 10) is True
            assert asyncio.get_running_loop().time() - start < 2
            assert await waiter.wait_for_events(0, 0.01) is True
        finally:
            await waiter.close()
            await writer.close()

    async def test_follow_yields_every_event_once(self, log: EventLog) -> None:
        await log.append(T, [ev("s", i) for i in range(3)])
        got: list[int] = []

        async def consume() -> None:
            async for batch in log.follow(0, batch_size=2, idle_timeout=0.05):
                got.extend(e.position for e in batch)
                if len(got) >= 5:
                    return

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.1)
        await log.append(T, [ev("s", 3), ev("s", 4)])
        await asyncio.wait_for(task, 10)
        assert got == [1, 2, 3, 4, 5]

    # -- checkpoints -------------------------------------------------------------------------------

    async def test_checkpoints(self, log: EventLog) -> None:
        assert await log.get_checkpoint("competency") == 0
        await log.save_checkpoint("competency", 10)
        await log.save_checkpoint("competency", 12)
        await log.save_checkpoint("competency", 3, partition=2)
        assert await log.get_checkpoint("competency") == 12
        assert await log.get_checkpoint("competency", 2) == 3
        assert await log.get_checkpoint("pacing") == 0
        # Several partitions in one call (a projector's segments, committed with one batch).
        await log.save_checkpoint("competency", 20, partition=[3, 0, 2])
        assert [await log.get_checkpoint("competency", p) for p in range(4)] == [20, 0, 20, 20]
        await log.save_checkpoint("competency", 21, partition=[])
        assert await log.get_checkpoint("competency") == 20

    async def test_checkpoint_commits_with_the_view_change_or_not_at_all(self, log: EventLog) -> None:
        async with log.transaction() as conn:
            await conn.execute(sa.text("CREATE TABLE view_rows (id INTEGER PRIMARY KEY)"))
        async with log.transaction() as conn:
            await conn.execute(sa.text("INSERT INTO view_rows VALUES (1)"))
            await log.save_checkpoint("view", 1, conn=conn)
        with pytest.raises(RuntimeError):
            async with log.transaction() as conn:
                await conn.execute(sa.text("INSERT INTO view_rows VALUES (2)"))
                await log.save_checkpoint("view", 2, conn=conn)
                raise RuntimeError("projector crashed")
        assert await log.get_checkpoint("view") == 1
        async with log.transaction() as conn:
            assert list((await conn.execute(sa.text("SELECT id FROM view_rows"))).scalars()) == [1]

    # -- tamper evidence ---------------------------------------------------------------------------

    async def test_each_tenant_has_its_own_hash_chain(self, log: EventLog) -> None:
        await log.append(T, [ev("s", 1), ev("s", 2)])
        await log.append("district-2", [ev("s", 3)])
        await log.append(T, [ev("s", 4)])
        a1, a2, b1, a3 = await read_all(log)
        assert a1.prev_hash == GENESIS
        assert b1.prev_hash == GENESIS
        assert a2.prev_hash == a1.hash
        assert a3.prev_hash == a2.hash
        assert all(e.expected_hash() == e.hash for e in (a1, a2, b1, a3))
        report = await log.verify()
        assert report.ok
        assert (report.events_checked, report.tenants) == (4, 2)
        assert report.heads == {T: a3.hash, "district-2": b1.hash}
        assert (await log.verify(T)).events_checked == 3

    async def test_reopening_continues_the_chain(self, log_url: str) -> None:
        for n in range(3):
            log = await open_event_log(log_url)
            await log.append(T, [ev("s", n)])
            await log.close()
        log = await open_event_log(log_url)
        try:
            assert (await log.verify()).events_checked == 3
            assert (await log.verify()).ok
        finally:
            await log.close()

    async def _ten_events(self, log: EventLog) -> None:
        for n in range(5):
            await log.append(T, [ev("s", 2 * n), ev("t", 2 * n + 1)])
        await log.append("district-2", [ev("s", 99)])

    async def test_verify_catches_an_altered_payload(self, log: EventLog, tamper: Callable[[str], None]) -> None:
        await self._ten_events(log)
        tamper("UPDATE events SET payload = CAST('{\"n\":1000}' AS BLOB_TYPE) WHERE position = 6")
        for report in (await log.verify(), await log.verify(T)):
            assert report.problem is not None
            assert (report.problem.position, report.problem.kind, report.problem.tenant) == (6, "altered", T)
            assert report.events_checked == 5

    async def test_verify_catches_an_altered_envelope(self, log: EventLog, tamper: Callable[[str], None]) -> None:
        await self._ten_events(log)
        tamper("UPDATE events SET stream = 'learner:someone-else' WHERE position = 3")
        report = await log.verify()
        assert report.problem is not None
        assert (report.problem.position, report.problem.kind) == (3, "altered")

    @pytest.mark.parametrize(
        "change",
        [
            "recorded_us = recorded_us + 1",
            "schema_version = 2",
            "key = 'stolen-key'",
            "fingerprint = CAST('x' AS BLOB_TYPE)",
            "sealed = CAST('x' AS BLOB_TYPE)",
            "key_id = 'another-key'",
            "prev_hash = hash",
            "hash = prev_hash",
            "tenant = 'district-2'",
        ],
    )
    async def test_verify_catches_any_altered_column(
        self, log: EventLog, tamper: Callable[[str], None], change: str
    ) -> None:
        await self._ten_events(log)
        tamper(f"UPDATE events SET {change} WHERE position = 5")
        report = await log.verify()
        assert report.problem is not None
        assert report.problem.position == 5
        assert report.problem.kind in ("altered", "removed")  # a changed prev_hash breaks the link itself

    async def test_verify_catches_a_value_of_another_type(self, log: EventLog, tamper: Callable[[str], None]) -> None:
        """SQLite stores the text as text in the payload column (PostgreSQL converts it to bytes)."""
        await self._ten_events(log)
        tamper("UPDATE events SET payload = '{}' WHERE position = 2")
        report = await log.verify()
        assert report.problem is not None
        assert (report.problem.position, report.problem.kind) == (2, "altered")

    async def test_verify_names_a_removed_event_by_the_hole_it_leaves(
        self, log: EventLog, tamper: Callable[[str], None]
    ) -> None:
        await self._ten_events(log)
        tamper("DELETE FROM events WHERE position = 4")
        for report in (await log.verify(), await log.verify(T)):
            assert report.problem is not None
            assert (report.problem.position, report.problem.kind) == (4, "removed")
            assert "no event at position 4" in report.problem.detail

    async def test_verify_catches_a_removed_first_event(self, log: EventLog, tamper: Callable[[str], None]) -> None:
        await self._ten_events(log)
        tamper("DELETE FROM events WHERE position = 1")
        for report in (await log.verify(), await log.verify(T)):
            assert report.problem is not None
            assert (report.problem.position, report.problem.kind) == (1, "removed")

    async def test_verify_catches_a_hole_left_by_another_tenants_removed_event(
        self, log: EventLog, tamper: Callable[[str], None]
    ) -> None:
        """Deleting a tenant's newest event leaves its chain whole; the hole in the positions still shows,
        even to a walk of another tenant, which cannot tell whose event it was."""
        await self._ten_events(log)
        await log.append(T, [ev("s", 100)])
        tamper("DELETE FROM events WHERE position = 11")  # district-2's only event
        assert (await log.verify("district-2")).problem is not None
        report = await log.verify(T)
        assert report.problem is not None
        assert (report.problem.position, report.problem.kind, report.problem.tenant) == (11, "removed", None)
        assert report.events_checked == 11

    async def test_verify_catches_a_renumbered_tail(self, log: EventLog, tamper: Callable[[str], None]) -> None:
        """Closing the hole by renumbering the later events breaks their hashes (the position is hashed)."""
        await self._ten_events(log)
        tamper("DELETE FROM events WHERE position = 4")
        for position in range(5, 12):
            tamper(f"UPDATE events SET position = {position - 1} WHERE position = {position}")
        report = await log.verify()
        assert report.problem is not None
        assert report.problem.position == 4
        assert report.problem.kind in ("altered", "removed")

    async def test_verify_catches_reordered_events(self, log: EventLog, tamper: Callable[[str], None]) -> None:
        await self._ten_events(log)
        tamper("UPDATE events SET position = -7 WHERE position = 7")
        tamper("UPDATE events SET position = 7 WHERE position = 8")
        tamper("UPDATE events SET position = 8 WHERE position = -7")
        for report in (await log.verify(), await log.verify(T)):
            assert report.problem is not None
            assert (report.problem.position, report.problem.kind) == (7, "reordered")
            assert "stands at position 8" in report.problem.detail

    async def test_verify_catches_an_event_moved_to_the_end(self, log: EventLog, tamper: Callable[[str], None]) -> None:
        await self._ten_events(log)
        tamper("UPDATE events SET position = 50 WHERE position = 3")
        report = await log.verify()
        assert report.problem is not None
        assert (report.problem.position, report.problem.kind) == (3, "removed")
        report = await log.verify(T)
        assert report.problem is not None
        assert report.problem.position == 3

    async def test_verify_catches_a_rehashed_rewrite(self, log: EventLog, tamper: Callable[[str], None]) -> None:
        """An attacker who edits a row and recomputes its hash still breaks the next link."""
        await self._ten_events(log)
        (victim,) = [e for e in await read_all(log) if e.position == 4]
        forged = self._forged_hash(victim, b'{"n":-1}')
        tamper(
            f"UPDATE events SET payload = CAST('{{\"n\":-1}}' AS BLOB_TYPE), hash = {self.hex(forged)} "
            "WHERE position = 4"
        )
        report = await log.verify()
        assert report.problem is not None
        assert (report.problem.position, report.problem.kind) == (5, "removed")

    def _forged_hash(self, victim: StoredEvent, payload: bytes, prev_hash: bytes | None = None) -> bytes:
        return chain_hash(
            victim.prev_hash if prev_hash is None else prev_hash,
            position=victim.position,
            tenant=victim.tenant,
            stream=victim.stream,
            stream_version=victim.stream_version,
            event_type=victim.event_type,
            schema_version=victim.schema_version,
            recorded_us=victim.recorded_us,
            key=victim.key,
            fingerprint=victim.fingerprint,
            payload=payload,
            sealed=victim.sealed,
            key_id=victim.key_id,
        )

    async def _rewrite_and_rehash_from(self, log: EventLog, tamper: Callable[[str], None], position: int) -> None:
        """Edit T's event at ``position`` and re-hash it and every later event of T: the chain holds again."""
        prev: bytes | None = None
        for event in await read_all(log, T):
            if event.position < position:
                continue
            payload = b'{"n":-1}' if event.position == position else event.payload
            link = event.prev_hash if prev is None else prev
            prev = self._forged_hash(event, payload, link)
            tamper(
                f"UPDATE events SET payload = {self.hex(payload)}, prev_hash = {self.hex(link)},"
                f" hash = {self.hex(prev)} WHERE position = {event.position}"
            )

    # -- signed checkpoints --------------------------------------------------------------------------

    async def test_a_checkpoint_catches_a_rewrite_that_rehashed_the_rest_of_the_chain(
        self, log: EventLog, tamper: Callable[[str], None]
    ) -> None:
        signer = Signer(Ed25519PrivateKey.generate())
        await self._ten_events(log)
        checkpoint = await log.record_checkpoint(T, signer)
        assert checkpoint is not None
        assert checkpoint.position == 10
        assert (await log.verify(public_key=signer.public_key)).checkpoints_met == 1
        await self._rewrite_and_rehash_from(log, tamper, 4)
        report = await log.verify(public_key=signer.public_key)
        assert report.problem is not None
        assert (report.problem.position, report.problem.kind) == (10, "altered")
        assert "rewritten and re-hashed" in report.problem.detail
        assert report.events_checked == 10  # every link and hash held: only the checkpoint tells
        with pytest.raises(LogTamperedError):
            await log.record_checkpoint(T, signer)

    async def test_a_checkpoint_catches_events_removed_from_the_end(
        self, log: EventLog, tamper: Callable[[str], None]
    ) -> None:
        """Deleting the newest events leaves neither a broken link nor a hole: only a checkpoint shows it."""
        signer = Signer(Ed25519PrivateKey.generate())
        await self._ten_events(log)
        await log.append(T, [ev("s", 100)])
        assert (await log.record_checkpoint(T, signer)) is not None
        tamper("DELETE FROM events WHERE position = 12")
        for report in (await log.verify(), await log.verify(T, public_key=signer.public_key)):
            assert report.problem is not None
            assert (report.problem.position, report.problem.kind, report.problem.tenant) == (12, "removed", T)
            assert "events were removed from the end" in report.problem.detail

    async def test_a_forged_checkpoint_is_reported_and_other_keys_are_left_unchecked(
        self, log: EventLog, tamper: Callable[[str], None]
    ) -> None:
        operator, earlier = Signer(Ed25519PrivateKey.generate()), Signer(Ed25519PrivateKey.generate())
        await self._ten_events(log)
        await log.record_checkpoint(T, earlier, position=4)
        await log.record_checkpoint(T, operator)
        report = await log.verify(public_key=operator.public_key)
        assert report.ok
        assert (report.checkpoints_met, report.signatures_verified, report.signatures_unchecked) == (2, 1, 1)
        tamper(f"UPDATE signed_checkpoints SET signed_us = signed_us + 1 WHERE key_id = '{operator.key_id}'")
        report = await log.verify(public_key=operator.public_key)
        assert report.problem is not None
        assert (report.problem.position, report.problem.kind) == (10, "forged")
        assert (await log.verify()).ok  # without the key, the checkpoint's hash still matches

    async def test_record_checkpoint_verifies_what_it_signs(self, log: EventLog, tamper: Callable[[str], None]) -> None:
        signer = Signer(Ed25519PrivateKey.generate())
        assert await log.record_checkpoint(T, signer) is None  # no events yet
        await self._ten_events(log)
        first = await log.record_checkpoint(T, signer, position=5)
        assert first is not None
        assert first.signature_valid(signer.public_key)
        assert first.chain_hash == next(e for e in await read_all(log) if e.position == 5).hash
        assert await log.record_checkpoint(T, signer, position=5) == first  # the same one, not signed again
        with pytest.raises(InvalidBatchError):
            await log.record_checkpoint(T, signer, position=11)  # district-2's event
        tamper("UPDATE events SET payload = CAST('{}' AS BLOB_TYPE) WHERE position = 5")
        with pytest.raises(LogTamperedError) as caught:
            await log.record_checkpoint(T, signer)  # from the checkpoint at 5, whose row is re-hashed too
        assert caught.value.problem.position == 5
        assert [c.position for c in await log.checkpoints(T)] == [5]
        assert await log.tenants() == [T, "district-2"]

    async def test_periodic_checkpoints_walk_only_what_is_new(self, log: EventLog) -> None:
        signer = Signer(Ed25519PrivateKey.generate())
        await self._ten_events(log)
        await log.record_checkpoint(T, signer)
        await log.append(T, [ev("s", 100), ev("s", 101)])
        second = await log.record_checkpoint(T, signer)
        assert second is not None
        assert second.position == 13
        assert [c.position for c in await log.checkpoints(T)] == [10, 13]
        assert [c.position for c in await log.checkpoints(after=10)] == [13]
        assert (await log.verify(public_key=signer.public_key)).signatures_verified == 2

    def hex(self, data: bytes) -> str:
        raise NotImplementedError
