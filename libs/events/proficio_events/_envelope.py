"""The event envelope and the tamper-evident hash chain.

Every event carries the tenant, its stream, its place in the stream and in the global log, its type
with a schema version, the time it was recorded and two bodies: ``payload`` (JSON) and ``sealed``
(opaque bytes: binary content such as an xAPI document, or personal data encrypted under the
per-learner key named by ``key_id``). The hash covers the sealed bytes as stored, so destroying a learner's key later
(crypto-shredding) leaves every hash valid and no event is ever rewritten.

Each tenant's events form one chain: ``hash = H(prev_hash, envelope, bodies)`` where ``prev_hash`` is
the hash of the tenant's previous event (``GENESIS`` for the first). The global position is inside
the hash, so moving an event is as visible as editing it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

#: The previous hash of a tenant's first event.
GENESIS = bytes(32)
#: Bumped if the hashed layout ever changes; stored implicitly by being hashed.
HASH_FORMAT = 1


def _length_prefixed(data: bytes | None) -> bytes:
    if data is None:
        return b"\xff" * 8
    return len(data).to_bytes(8, "big") + data


def chain_hash(
    prev_hash: bytes,
    *,
    position: int,
    tenant: str,
    stream: str,
    stream_version: int,
    event_type: str,
    schema_version: int,
    recorded_us: int,
    key: str | None,
    fingerprint: bytes | None,
    payload: bytes,
    sealed: bytes | None,
    key_id: str | None,
) -> bytes:
    """The SHA-256 link of one event to the previous event of its tenant."""
    header = orjson.dumps(
        [HASH_FORMAT, position, tenant, stream, stream_version, event_type, schema_version, recorded_us, key, key_id]
    )
    digest = hashlib.sha256(prev_hash)
    digest.update(_length_prefixed(header))
    digest.update(_length_prefixed(fingerprint))
    digest.update(_length_prefixed(payload))
    digest.update(_length_prefixed(sealed))
    return digest.digest()


def default_fingerprint(event_type: str, payload: bytes, sealed: bytes | None) -> bytes:
    """Content identity used for idempotency when the writer gives none: type and bodies."""
    digest = hashlib.sha256(event_type.encode())
    digest.update(_length_prefixed(payload))
    digest.update(_length_prefixed(sealed))
    return digest.digest()


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event a writer wants appended.

    ``key`` makes the append idempotent: within a tenant, a key appears once in the log. Appending
    the same key again with the same ``fingerprint`` is a no-op; with another fingerprint it is a
    :class:`~proficio_events.DuplicateEventError`. Writers whose notion of "same content" is not
    byte equality (xAPI statements) pass their own fingerprint. A fingerprint is stored in the log,
    so it must never be derived from personal data without a key.

    ``expected_version`` (optional) is the version the stream must be at just before this event;
    0 means the stream must not exist yet.

    ``private`` is personal data to seal (see ``_keyring``): the log encrypts it, in the append
    transaction, under the data key of learner ``seal_for`` and stores the ciphertext as ``sealed`` (with
    ``key_id``). It is never stored in clear. A keyed event with ``private`` needs its own ``fingerprint``
    (the ciphertext differs every time, so it cannot be the content's identity).

    ``new_key``: the writer made ``key`` just now from enough randomness that no event can have it yet (a random
    UUID the writer assigned). The group commit then does not look it up among the stored keys (one index probe
    per event under the log's write lock); the log's unique index on keys would still refuse a repeat.

    ``learner_of`` names the event's learner by the directory digest of her identity (see ``_directory``):
    the log resolves it to her learner id inside the append transaction (creating her directory row, and so
    her id, if she has none) and puts that id where the event has ``PENDING_LEARNER``: its stream, its
    ``seal_for``, the top-level ``learner`` field of its payload (then re-serialised from ``decoded``).
    """

    stream: str
    event_type: str
    payload: bytes
    key: str | None = None
    fingerprint: bytes | None = None
    expected_version: int | None = None
    schema_version: int = 1
    sealed: bytes | None = None
    key_id: str | None = None
    #: The payload as an object, handed to inline handlers so they need not parse it again. Not stored.
    decoded: Any = field(default=None, compare=False, repr=False)
    #: Personal data to seal under ``seal_for``'s key; the log replaces it by ``sealed`` and ``key_id``.
    private: bytes | None = field(default=None, repr=False)
    seal_for: str | None = None
    learner_of: str | None = None
    #: What the writer already worked out from the event for its inline handler, before the append (so that
    #: work is not done under the log's write lock). Passed on to ``StoredEvent.prepared``; never stored or
    #: hashed, and never relied on: a handler must give the same result without it (a rebuild has none).
    prepared: Any = field(default=None, compare=False, repr=False)
    new_key: bool = False

    @classmethod
    def of(cls, stream: str, event_type: str, data: Any, **kwargs: Any) -> NewEvent:
        """Build an event from JSON-able data, serialised with orjson (``data`` must not change after)."""
        return cls(stream, event_type, orjson.dumps(data), decoded=data, **kwargs)

    def identity(self) -> bytes:
        """The fingerprint compared on a repeated key."""
        if self.fingerprint is not None:
            return self.fingerprint
        return default_fingerprint(self.event_type, self.payload, self.sealed)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the log holds it."""

    position: int
    tenant: str
    stream: str
    stream_version: int
    event_type: str
    schema_version: int
    recorded_us: int
    key: str | None
    fingerprint: bytes | None
    payload: bytes
    sealed: bytes | None
    key_id: str | None
    prev_hash: bytes
    hash: bytes
    #: The payload as an object when the event was appended in this process (see ``NewEvent.decoded``).
    decoded: Any = field(default=None, compare=False, repr=False)
    #: The plaintext of ``sealed`` when the log sealed it in this process (``NewEvent.private``), for
    #: inline handlers. Never stored; None when read back from the log.
    opened: bytes | None = field(default=None, compare=False, repr=False)
    #: ``NewEvent.prepared`` when the event was appended in this process; None when read back from the log.
    prepared: Any = field(default=None, compare=False, repr=False)

    @property
    def recorded_at(self) -> datetime:
        return datetime.fromtimestamp(self.recorded_us / 1_000_000, tz=UTC)

    def data(self) -> Any:
        """The payload, decoded (treat it as read-only)."""
        if self.decoded is not None:
            return self.decoded
        return orjson.loads(self.payload)

    def expected_hash(self) -> bytes:
        """The hash this event should carry given its content and its ``prev_hash``."""
        return chain_hash(
            self.prev_hash,
            position=self.position,
            tenant=self.tenant,
            stream=self.stream,
            stream_version=self.stream_version,
            event_type=self.event_type,
            schema_version=self.schema_version,
            recorded_us=self.recorded_us,
            key=self.key,
            fingerprint=self.fingerprint,
            payload=self.payload,
            sealed=self.sealed,
            key_id=self.key_id,
        )


def _faster_init(cls: type) -> None:
    """Give a frozen, slotted dataclass an ``__init__`` that sets its slots through their own descriptors.

    The generated ``__init__`` sets each field with ``object.__setattr__`` (~90 ns a field: 1.6 µs for a
    StoredEvent, built for every event appended or read); the slot descriptors take half of that. Same
    parameters and defaults; instances stay frozen."""
    fields = dataclasses.fields(cls)
    scope: dict[str, Any] = {}
    parameters: list[str] = []
    for f in fields:
        if f.default_factory is not dataclasses.MISSING or f.kw_only:
            raise TypeError(f"{cls.__name__}.{f.name}: only plain fields and defaults are supported")
        scope[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
        if f.default is dataclasses.MISSING:
            parameters.append(f.name)
        else:
            scope[f"_default_{f.name}"] = f.default
            parameters.append(f"{f.name}=_default_{f.name}")
    body = "".join(f"    _set_{f.name}(self, {f.name})\n" for f in fields)
    exec(f"def __init__(self, {', '.join(parameters)}):\n{body}", scope)  # as dataclasses makes __init__
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[misc]


_faster_init(NewEvent)
_faster_init(StoredEvent)


@dataclass(frozen=True, slots=True)
class StreamHead:
    """A stream's newest event as a decided append sees it under the write lock (``EventLog.append_decided``).

    ``version`` 0: the stream has no event. ``erased``: the event's private data was sealed under a key that
    has since been destroyed (its learner was erased), so what it carried is gone.
    """

    stream: str
    version: int
    event_type: str | None = None
    recorded_us: int = 0
    payload: bytes | None = None
    key_id: str | None = None
    erased: bool = False

    def data(self) -> Any:
        """The newest event's payload, decoded (None for an empty stream)."""
        return None if self.payload is None else orjson.loads(self.payload)


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append did: ``events`` line up with the batch; ``created[i]`` is False for a repeat."""

    events: tuple[StoredEvent, ...]
    created: tuple[bool, ...]

    @property
    def new_events(self) -> tuple[StoredEvent, ...]:
        return tuple(e for e, c in zip(self.events, self.created, strict=True) if c)

    @property
    def last_position(self) -> int:
        return max((e.position for e in self.events), default=0)


ProblemKind = Literal["altered", "removed", "reordered", "forged"]


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """The first place where a tenant's chain does not hold.

    ``tenant`` is None when it cannot be told: a hole in the log's positions (whose event was deleted).
    ``forged``: a stored checkpoint whose signature does not verify.
    """

    tenant: str | None
    position: int
    kind: ProblemKind
    detail: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of walking the hash chain.

    ``checkpoints_met``: stored checkpoints whose hash the chain still shows at their position;
    ``signatures_verified``: those whose signature was checked against the public key given (the others
    were signed by another key, or no key was given).
    """

    events_checked: int
    tenants: int
    problem: ChainProblem | None = None
    heads: dict[str, bytes] = field(default_factory=dict)
    checkpoints_met: int = 0
    signatures_verified: int = 0
    signatures_unchecked: int = 0

    @property
    def ok(self) -> bool:
        return self.problem is None
