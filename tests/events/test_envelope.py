"""The envelope and hash chain, without I/O."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import pytest

from proficio_events import GENESIS, NewEvent, StoredEvent, chain_hash


def stored(**changes: object) -> StoredEvent:
    fields: dict[str, object] = {
        "position": 7,
        "tenant": "district-1",
        "stream": "learner:1",
        "stream_version": 2,
        "event_type": "StatementStored",
        "schema_version": 1,
        "recorded_us": 1_700_000_000_000_000,
        "key": "3f2b",
        "fingerprint": b"fp",
        "payload": b'{"a":1}',
        "sealed": b"\x00secret",
        "key_id": "k1",
        "prev_hash": GENESIS,
        "hash": b"",
    }
    fields.update(changes)
    event = StoredEvent(**fields)  # type: ignore[arg-type]
    return replace(event, hash=event.expected_hash())


def test_hash_is_deterministic_and_self_consistent() -> None:
    assert stored().hash == stored().hash
    assert len(stored().hash) == 32
    assert stored().expected_hash() == stored().hash


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("position", 8),
        ("tenant", "district-2"),
        ("stream", "learner:2"),
        ("stream_version", 3),
        ("event_type", "StatementVoided"),
        ("schema_version", 2),
        ("recorded_us", 1_700_000_000_000_001),
        ("key", None),
        ("fingerprint", None),
        ("payload", b'{"a":2}'),
        ("sealed", None),
        ("sealed", b""),
        ("key_id", "k2"),
        ("prev_hash", b"\x01" * 32),
    ],
)
def test_every_field_is_covered_by_the_hash(field: str, value: object) -> None:
    original = stored()
    tampered = replace(original, **{field: value})
    assert tampered.expected_hash() != original.hash


def test_bodies_cannot_be_shifted_between_fields() -> None:
    a = chain_hash(GENESIS, position=1, tenant="t", stream="s", stream_version=1, event_type="E", schema_version=1,
                   recorded_us=0, key=None, fingerprint=None, payload=b"ab", sealed=b"c", key_id=None)  # fmt: skip
    b = chain_hash(GENESIS, position=1, tenant="t", stream="s", stream_version=1, event_type="E", schema_version=1,
                   recorded_us=0, key=None, fingerprint=None, payload=b"a", sealed=b"bc", key_id=None)  # fmt: skip
    assert a != b


def test_default_fingerprint_follows_content() -> None:
    one = NewEvent.of("s", "E", {"x": 1}, key="k")
    assert one.identity() == NewEvent.of("other-stream", "E", {"x": 1}, key="k").identity()
    assert one.identity() != NewEvent.of("s", "E", {"x": 2}, key="k").identity()
    assert one.identity() != NewEvent.of("s", "F", {"x": 1}, key="k").identity()
    assert NewEvent.of("s", "E", {"x": 1}, fingerprint=b"mine").identity() == b"mine"


def test_recorded_at_is_utc() -> None:
    assert stored(recorded_us=0).recorded_at.isoformat() == "1970-01-01T00:00:00+00:00"


def test_events_are_built_as_the_dataclasses_would_build_them() -> None:
    # NewEvent and StoredEvent get a faster __init__ (``_faster_init``): same parameters, defaults and result.
    event = NewEvent("learner:1", "StatementStored", b"{}", key="k", private=b"p", new_key=True)
    assert (event.stream, event.key, event.private, event.new_key) == ("learner:1", "k", b"p", True)
    assert (event.fingerprint, event.expected_version, event.schema_version, event.prepared) == (None, None, 1, None)
    assert event == dataclasses.replace(event)  # replace() goes through __init__ with every field
    assert event == NewEvent.of("learner:1", "StatementStored", {}, key="k", private=b"p", new_key=True)
    assert event != NewEvent.of("learner:1", "StatementStored", {}, key="k2", private=b"p", new_key=True)
    stored = StoredEvent(*range(14))  # type: ignore[arg-type]
    assert (stored.position, stored.hash, stored.decoded, stored.opened) == (0, 13, None, None)
    assert dataclasses.astuple(dataclasses.replace(stored, position=99))[:2] == (99, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.stream = "learner:2"  # type: ignore[misc]
    with pytest.raises(TypeError, match="payload"):
        NewEvent("learner:1", "StatementStored")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword"):
        NewEvent("learner:1", "StatementStored", b"{}", colour="red")  # type: ignore[call-arg]
