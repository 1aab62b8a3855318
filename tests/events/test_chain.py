"""The fast chain walk computes exactly the hash ``chain_hash`` defines, and stops where the chain breaks."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from proficio_events import GENESIS, Anchor, ChainWalk, chain_hash, row_hash

text = st.text(max_size=20)  # any code point: quotes, backslashes, control characters, astral planes
maybe_bytes = st.none() | st.binary(max_size=40)


@st.composite
def rows(draw: st.DrawFn) -> tuple[Any, ...]:
    return (
        draw(st.integers(1, 2**62)),
        draw(text),
        draw(text),
        draw(st.integers(1, 2**31 - 1)),
        draw(text),
        draw(st.integers(1, 2**15 - 1)),
        draw(st.integers(0, 2**62)),
        draw(st.none() | text),
        draw(maybe_bytes),
        draw(st.binary(max_size=200)),
        draw(maybe_bytes),
        draw(st.none() | text),
    )


@given(rows(), st.binary(min_size=32, max_size=32))
def test_row_hash_is_chain_hash(row: tuple[Any, ...], prev: bytes) -> None:
    (position, tenant, stream, version, kind, schema, recorded, key, fingerprint, payload, sealed, key_id) = row
    expected = chain_hash(
        prev, position=position, tenant=tenant, stream=stream, stream_version=version, event_type=kind,
        schema_version=schema, recorded_us=recorded, key=key, fingerprint=fingerprint, payload=payload,
        sealed=sealed, key_id=key_id,
    )  # fmt: skip
    assert row_hash(row, prev) == expected
    walk = ChainWalk({tenant: prev})
    assert walk.feed([(*row, prev, expected)])
    assert walk.heads[tenant] == expected


def chain(tenant: str, count: int, start: int = 1) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    prev = GENESIS
    for position in range(start, start + count):
        row = (position, tenant, "s", position, "E", 1, position, None, None, b"{}", None, None)
        digest = row_hash(row, prev)
        out.append((*row, prev, digest))
        prev = digest
    return out


def test_a_contiguous_walk_names_the_first_missing_position() -> None:
    events = chain("t", 6)
    walk = ChainWalk(contiguous=True)
    assert not walk.feed(events[:2] + events[3:])
    assert walk.problem is not None
    assert (walk.problem.position, walk.problem.kind, walk.problem.tenant) == (3, "removed", None)
    assert walk.checked == 2


def test_a_broken_link_is_left_to_the_caller_to_explain() -> None:
    events = chain("t", 4)
    walk = ChainWalk()
    assert not walk.feed([events[0], events[2]])
    assert walk.broken is not None
    assert (walk.broken.position, walk.broken.prev_hash, walk.broken.expected_prev) == (3, events[1][13], events[0][13])


def test_anchors_hold_the_chain_to_a_signed_hash_and_to_its_length() -> None:
    events = chain("t", 5)
    good = Anchor("t", 3, events[2][13], "checkpoint A")
    walk = ChainWalk(anchors=[good])
    assert walk.feed(events[:2])
    assert walk.feed(events[2:])
    assert walk.finish()
    assert walk.anchors_met == 1

    bad = Anchor("t", 4, bytes(32), "checkpoint B")
    walk = ChainWalk(anchors=[good, bad])
    assert not walk.feed(events)
    assert walk.problem is not None
    assert (walk.problem.position, walk.problem.kind) == (4, "altered")
    assert "after position 3" in walk.problem.detail  # the last checkpoint that still matched

    beyond = Anchor("t", 9, bytes(32), "checkpoint C")
    walk = ChainWalk(anchors=[beyond])
    assert walk.feed(events)
    assert not walk.finish()
    assert walk.problem is not None
    assert (walk.problem.position, walk.problem.kind) == (9, "removed")
